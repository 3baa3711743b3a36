"""Patients and their informed consent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from records.errors import Conflict
from records.models import (
    Consent,
    Patient,
)
from records.schema import (
    consents,
    patients,
)
from records.store.base import first_row, new_id

# -- patients and consent ---------------------------------------------------------


def add_patient(
    conn: sa.Connection,
    *,
    institution_id: str,
    name: str,
    sex: str,
    birth_date: date,
    national_id: str,
    phone: str | None,
    created_by: str,
    created_at: datetime,
) -> str:
    """Store a patient; a second patient with the same ID number is a Conflict."""
    pid = new_id()
    try:
        conn.execute(
            patients.insert().values(
                id=pid,
                institution_id=institution_id,
                name=name,
                sex=sex,
                birth_date=birth_date,
                national_id=national_id,
                phone=phone,
                created_by=created_by,
                created_at=created_at,
            )
        )
    except IntegrityError as exc:
        raise Conflict(
            "a patient with this ID number is already registered", fields=("national_id",)
        ) from exc
    return pid


def get_patient(conn: sa.Connection, patient_id: str) -> Patient | None:
    """The patient, or None."""
    row = first_row(conn, sa.select(patients).where(patients.c.id == patient_id))
    return Patient.from_row(row) if row else None


def list_patients(conn: sa.Connection, institution_id: str) -> list[Patient]:
    """The patients of one institution, newest first."""
    rows = conn.execute(
        sa.select(patients)
        .where(patients.c.institution_id == institution_id)
        .order_by(patients.c.created_at.desc())
    )
    return [Patient.from_row(r) for r in rows.mappings()]


def add_consent(
    conn: sa.Connection,
    *,
    patient_id: str,
    scope_consultation: bool,
    scope_recording: bool,
    given_by: str,
    relationship: str,
    taken_by: str,
    given_at: datetime,
) -> str:
    """Store a consent and return its id."""
    cid = new_id()
    conn.execute(
        consents.insert().values(
            id=cid,
            patient_id=patient_id,
            scope_consultation=scope_consultation,
            scope_recording=scope_recording,
            given_by=given_by,
            relationship=relationship,
            taken_by=taken_by,
            given_at=given_at,
        )
    )
    return cid


def list_consents(conn: sa.Connection, patient_id: str) -> list[Consent]:
    """A patient's consents, newest first."""
    rows = conn.execute(
        sa.select(consents)
        .where(consents.c.patient_id == patient_id)
        .order_by(consents.c.given_at.desc())
    )
    return [Consent.from_row(r) for r in rows.mappings()]


def get_consent(conn: sa.Connection, consent_id: str) -> Consent | None:
    """The consent, or None."""
    row = first_row(conn, sa.select(consents).where(consents.c.id == consent_id))
    return Consent.from_row(row) if row else None


def withdraw_consent(conn: sa.Connection, consent_id: str, *, at: datetime, by: str) -> bool:
    """Mark a consent withdrawn; False if it already was."""
    result = conn.execute(
        consents.update()
        .where(consents.c.id == consent_id, consents.c.withdrawn_at.is_(None))
        .values(withdrawn_at=at, withdrawn_by=by)
    )
    return result.rowcount == 1


def active_consent(conn: sa.Connection, patient_id: str) -> Consent | None:
    """The newest un-withdrawn consent that covers consultation, or None."""
    for consent in list_consents(conn, patient_id):
        if consent.withdrawn_at is None and consent.scope_consultation:
            return consent
    return None


def get_patients(conn: sa.Connection, patient_ids: Iterable[str]) -> dict[str, Patient]:
    """Patients by id (one query)."""
    ids = list(set(patient_ids))
    if not ids:
        return {}
    rows = conn.execute(sa.select(patients).where(patients.c.id.in_(ids)))
    return {r["id"]: Patient.from_row(r) for r in rows.mappings()}
