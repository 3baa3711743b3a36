"""Look-ups behind a visibility check, doing the same work whatever they find.

An id the caller may not see is answered exactly like an id that never existed.
The answer alone is not enough: if a found row led to more queries than a
missing one, the time taken would tell the two apart (issue 15 measured 1-2 ms on
every route). So each function here runs the same statements, in the same order,
with the same shape, whether the object exists or not: what a found row would be
followed by is asked with the requested id instead (it matches nothing).
"""

from __future__ import annotations

import sqlalchemy as sa

from records.documents import Document, get_document
from records.models import Consultation, Patient, Recording
from records.schema import consultation_invitees, consultations
from records.store.base import first_row
from records.store.patients import get_patient
from records.store.recordings import get_recording


def _invitee_ids(conn: sa.Connection, consultation_id: str) -> frozenset[str]:
    rows = conn.execute(
        sa.select(consultation_invitees.c.account_id).where(
            consultation_invitees.c.consultation_id == consultation_id
        )
    )
    return frozenset(rows.scalars())


def consultation(conn: sa.Connection, consultation_id: str) -> Consultation | None:
    """The consultation with its invitees, or None (two statements either way)."""
    row = first_row(conn, sa.select(consultations).where(consultations.c.id == consultation_id))
    invitees = _invitee_ids(conn, consultation_id)
    return Consultation.of(row, invitees) if row is not None else None


def document(
    conn: sa.Connection, document_id: str
) -> tuple[Document | None, Patient | None, Consultation | None]:
    """A document, its patient and the consultation it is attached to (each or None)."""
    found = get_document(conn, document_id)
    patient = get_patient(conn, found.patient_id if found else document_id)
    attached = found.consultation_id if found and found.consultation_id else document_id
    return found, patient, consultation(conn, attached)


def patient_with_consultations(
    conn: sa.Connection, patient_id: str
) -> tuple[Patient | None, list[Consultation]]:
    """A patient and every consultation about them with invitees (three statements)."""
    patient = get_patient(conn, patient_id)
    rows = (
        conn.execute(sa.select(consultations).where(consultations.c.patient_id == patient_id))
        .mappings()
        .all()
    )
    # A join rather than ``IN (ids)``: the statement does not grow with the answer.
    pairs = conn.execute(
        sa.select(consultation_invitees.c.consultation_id, consultation_invitees.c.account_id)
        .join(consultations, consultations.c.id == consultation_invitees.c.consultation_id)
        .where(consultations.c.patient_id == patient_id)
    )
    invited: dict[str, set[str]] = {}
    for cid, aid in pairs:
        invited.setdefault(cid, set()).add(aid)
    return patient, [Consultation.of(r, frozenset(invited.get(r["id"], ()))) for r in rows]


def recording(
    conn: sa.Connection, recording_id: str
) -> tuple[Recording | None, Consultation | None]:
    """A recording and its consultation (each or None)."""
    found = get_recording(conn, recording_id)
    return found, consultation(conn, found.consultation_id if found else recording_id)
