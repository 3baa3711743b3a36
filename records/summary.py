"""Storage of a patient's structured summary, and the reads the FHIR export needs.

The summary (conditions, medications, allergies, observations) is fed by a county
EMR's FHIR Bundle. Each row keeps its FHIR statuses; a row its source withdrew
(entered in error, refuted, cancelled) stays stored but ``Summary.shown`` leaves it
out of what is displayed. Each row keeps the FHIR resource it came from in ``source``
(``"Condition/abc"``), so that importing the same Bundle again updates rows
instead of adding copies.

Codes other than ICD-10 diagnoses are stored as FHIR search tokens,
``"<system>|<code>"`` (``"http://loinc.org|2345-7"``), because the tables have
one code column and the export must give the code system back; a code whose
token does not fit the column is kept without its system.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import RowMapping

from records.models import Consultation, Opinion, Row
from records.schema import (
    allergies,
    blobs,
    conditions,
    consultation_invitees,
    consultations,
    documents,
    immunizations,
    medications,
    observations,
    opinions,
    procedures,
)
from records.store import new_id

# Statuses under which a source withdraws an entry. Such a row is kept (nothing
# stored is lost, and the export gives the status back) but never shown as a fact:
# an entered-in-error diagnosis, a refuted allergy, a cancelled lab result.
WITHDRAWN_VERIFICATION = frozenset({"entered-in-error", "refuted"})
WITHDRAWN_MEDICATION = frozenset({"entered-in-error", "not-taken", "cancelled", "draft"})
WITHDRAWN_OBSERVATION = frozenset({"entered-in-error", "cancelled"})

# An immunization or procedure that was not done is not one the patient had.
WITHDRAWN_EVENT = frozenset({"entered-in-error", "not-done"})

SummaryTable = Literal[
    "conditions", "medications", "allergies", "observations", "immunizations", "procedures"
]
TABLES: dict[SummaryTable, sa.Table] = {
    "conditions": conditions,
    "medications": medications,
    "allergies": allergies,
    "observations": observations,
    "immunizations": immunizations,
    "procedures": procedures,
}


def join_code(system: str | None, code: str | None, max_len: int = 64) -> str | None:
    """The stored form of a coded value: ``system|code`` if it fits, else the code."""
    if not code:
        return None
    if system and len(system) + 1 + len(code) <= max_len:
        return f"{system}|{code}"
    return code


def split_code(stored: str | None) -> tuple[str | None, str | None]:
    """``(system, code)`` of a stored coded value (see ``join_code``)."""
    if not stored:
        return None, None
    system, sep, code = stored.rpartition("|")
    return (system, code) if sep else (None, stored)


@dataclass(frozen=True, kw_only=True)
class ConditionRow(Row):
    """A diagnosis: a bare ICD-10 code, or ``system|code`` in SNOMED CT or ICD-11."""

    id: str
    source: str | None
    code: str
    display: str
    clinical_status: str | None
    onset: str | None
    recorded_at: datetime
    verification_status: str | None = None

    @property
    def withdrawn(self) -> bool:
        """Entered in error or refuted: never to be shown as a diagnosis."""
        return (
            self.verification_status in WITHDRAWN_VERIFICATION
            or self.clinical_status == "entered-in-error"
        )


@dataclass(frozen=True, kw_only=True)
class MedicationRow(Row):
    """A medication the patient takes or took."""

    id: str
    source: str | None
    code: str | None
    display: str
    dosage: str | None
    status: str
    recorded_at: datetime

    @property
    def withdrawn(self) -> bool:
        """Entered in error, not taken, cancelled or a mere draft: not a medication
        the patient takes or took."""
        return self.status in WITHDRAWN_MEDICATION


@dataclass(frozen=True, kw_only=True)
class AllergyRow(Row):
    """An allergy or intolerance."""

    id: str
    source: str | None
    code: str | None
    display: str
    criticality: str | None
    reaction: str | None
    recorded_at: datetime
    clinical_status: str | None = None
    verification_status: str | None = None

    @property
    def withdrawn(self) -> bool:
        """Entered in error or refuted: the patient is not known to have it."""
        return self.verification_status in WITHDRAWN_VERIFICATION


@dataclass(frozen=True, kw_only=True)
class ObservationRow(Row):
    """A vital sign or lab result, with its reference range."""

    id: str
    source: str | None
    category: str
    code: str
    display: str
    value_number: float | None
    value_text: str | None
    unit: str | None
    ref_low: float | None
    ref_high: float | None
    effective_at: datetime | None
    recorded_at: datetime
    status: str | None = None

    @property
    def withdrawn(self) -> bool:
        """Entered in error or cancelled: no result to show (or to flag)."""
        return self.status in WITHDRAWN_OBSERVATION

    @property
    def flag(self) -> str | None:
        """``"L"`` below the reference range, ``"H"`` above it, else None."""
        if self.value_number is None or self.withdrawn:
            return None
        if self.ref_low is not None and self.value_number < self.ref_low:
            return "L"
        if self.ref_high is not None and self.value_number > self.ref_high:
            return "H"
        return None


@dataclass(frozen=True, kw_only=True)
class ImmunizationRow(Row):
    """A vaccination given (or recorded as not given)."""

    id: str
    source: str | None
    code: str | None
    display: str
    status: str
    occurred: str | None
    recorded_at: datetime

    @property
    def withdrawn(self) -> bool:
        """Entered in error or not done: not a vaccination the patient had."""
        return self.status in WITHDRAWN_EVENT


@dataclass(frozen=True, kw_only=True)
class ProcedureRow(Row):
    """A procedure performed (an operation, an examination, a therapy)."""

    id: str
    source: str | None
    code: str | None
    display: str
    status: str
    performed: str | None
    recorded_at: datetime

    @property
    def withdrawn(self) -> bool:
        """Entered in error or not done: not a procedure the patient had."""
        return self.status in WITHDRAWN_EVENT


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Everything stored in a patient's structured summary."""

    conditions: list[ConditionRow] = field(default_factory=list)
    medications: list[MedicationRow] = field(default_factory=list)
    allergies: list[AllergyRow] = field(default_factory=list)
    observations: list[ObservationRow] = field(default_factory=list)
    immunizations: list[ImmunizationRow] = field(default_factory=list)
    procedures: list[ProcedureRow] = field(default_factory=list)

    @property
    def vitals(self) -> list[ObservationRow]:
        """Observations of category ``vital-signs``."""
        return [o for o in self.observations if o.category == "vital-signs"]

    @property
    def labs(self) -> list[ObservationRow]:
        """Observations of category ``laboratory``."""
        return [o for o in self.observations if o.category == "laboratory"]

    @property
    def other_observations(self) -> list[ObservationRow]:
        """Observations of any other category (social history, surveys, ...)."""
        return [o for o in self.observations if o.category not in ("vital-signs", "laboratory")]

    def shown(self) -> Summary:
        """The rows that may be shown as facts: withdrawn ones left out (see ``withdrawn``)."""
        return Summary(
            conditions=[r for r in self.conditions if not r.withdrawn],
            medications=[r for r in self.medications if not r.withdrawn],
            allergies=[r for r in self.allergies if not r.withdrawn],
            observations=[r for r in self.observations if not r.withdrawn],
            immunizations=[r for r in self.immunizations if not r.withdrawn],
            procedures=[r for r in self.procedures if not r.withdrawn],
        )

    def withdrawn_counts(self) -> dict[str, int]:
        """How many rows of each section are withdrawn (and so not shown)."""
        return {
            "conditions": sum(r.withdrawn for r in self.conditions),
            "medications": sum(r.withdrawn for r in self.medications),
            "allergies": sum(r.withdrawn for r in self.allergies),
            "vitals": sum(r.withdrawn for r in self.vitals),
            "labs": sum(r.withdrawn for r in self.labs),
            "other": sum(r.withdrawn for r in self.other_observations),
            "immunizations": sum(r.withdrawn for r in self.immunizations),
            "procedures": sum(r.withdrawn for r in self.procedures),
        }


@dataclass(frozen=True, kw_only=True)
class DocumentRow(Row):
    """An attachment as the FHIR export describes it (its blob's size beside it)."""

    id: str
    patient_id: str
    consultation_id: str | None
    sha256: str
    kind: str
    media_type: str
    filename: str
    title: str
    pages: int | None
    size: int
    uploaded_by: str
    uploaded_at: datetime


# -- the summary ------------------------------------------------------------------


def upsert(
    conn: sa.Connection,
    table: SummaryTable,
    *,
    patient_id: str,
    source: str,
    values: Mapping[str, Any],
    recorded_at: datetime,
) -> bool:
    """Store a summary row, or update the one that came from the same ``source``.

    Returns:
        True if a row was added, False if an existing one was updated.
    """
    t = TABLES[table]
    existing = (
        conn.execute(
            sa.select(t.c.id).where(t.c.patient_id == patient_id, t.c.source == source).limit(1)
        )
    ).scalar()
    if existing is not None:
        conn.execute(t.update().where(t.c.id == existing).values(**values, recorded_at=recorded_at))
        return False
    # Our own export names each row by its id (``Condition/<id>``): brought back,
    # it updates that row (keeping where the row first came from) instead of
    # adding a copy.
    _type, _sep, own_id = source.rpartition("/")
    own = (
        conn.execute(sa.select(t.c.id).where(t.c.patient_id == patient_id, t.c.id == own_id))
    ).scalar()
    if own is not None:
        conn.execute(t.update().where(t.c.id == own).values(**values, recorded_at=recorded_at))
        return False
    conn.execute(
        t.insert().values(
            id=new_id(), patient_id=patient_id, source=source, recorded_at=recorded_at, **values
        )
    )
    return True


def read_summary(conn: sa.Connection, patient_id: str) -> Summary:
    """A patient's structured summary (observations newest first)."""

    def rows(t: sa.Table, *order: Any) -> list[RowMapping]:
        query = sa.select(t).where(t.c.patient_id == patient_id).order_by(*order, t.c.id)
        return list((conn.execute(query)).mappings())

    return Summary(
        conditions=[ConditionRow.from_row(r) for r in rows(conditions, conditions.c.code)],
        medications=[MedicationRow.from_row(r) for r in rows(medications, medications.c.display)],
        allergies=[AllergyRow.from_row(r) for r in rows(allergies, allergies.c.display)],
        observations=[
            ObservationRow.from_row(r)
            for r in rows(
                observations,
                observations.c.category,
                observations.c.effective_at.desc(),
                observations.c.code,
            )
        ],
        immunizations=[
            ImmunizationRow.from_row(r)
            for r in rows(immunizations, immunizations.c.occurred.desc(), immunizations.c.display)
        ],
        procedures=[
            ProcedureRow.from_row(r)
            for r in rows(procedures, procedures.c.performed.desc(), procedures.c.display)
        ],
    )


# -- what the export and the access rules read ------------------------------------


def patient_consultations(conn: sa.Connection, patient_id: str) -> list[Consultation]:
    """Every consultation of a patient, with its invitees (for visibility checks)."""
    rows = (
        (conn.execute(sa.select(consultations).where(consultations.c.patient_id == patient_id)))
        .mappings()
        .all()
    )
    ids = [r["id"] for r in rows]
    invited: dict[str, set[str]] = {}
    if ids:
        pairs = conn.execute(
            sa.select(
                consultation_invitees.c.consultation_id, consultation_invitees.c.account_id
            ).where(consultation_invitees.c.consultation_id.in_(ids))
        )
        for cid, aid in pairs:
            invited.setdefault(cid, set()).add(aid)
    return [Consultation.of(r, frozenset(invited.get(r["id"], ()))) for r in rows]


def consultation_documents(conn: sa.Connection, consultation_id: str) -> list[DocumentRow]:
    """The attachments of a consultation, oldest first, with their sizes."""
    query = (
        sa.select(documents, blobs.c.size)
        .join(blobs, blobs.c.sha256 == documents.c.sha256)
        .where(documents.c.consultation_id == consultation_id)
        .order_by(documents.c.uploaded_at, documents.c.id)
    )
    return [DocumentRow.from_row(r) for r in (conn.execute(query)).mappings()]


def get_opinion(conn: sa.Connection, opinion_id: str) -> Opinion | None:
    """A signed opinion, referral or addendum, or None."""
    row = (conn.execute(sa.select(opinions).where(opinions.c.id == opinion_id))).mappings().first()
    return Opinion.from_row(row) if row else None
