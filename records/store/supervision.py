"""The rows of the supervision export: consultations of a time range, with what
``records.supervision`` says about each, read in a few bulk queries."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from records.models import Consultation, Department, Event, Institution, Opinion, Recording
from records.schema import (
    consultation_events,
    consultations,
    departments,
    institutions,
    opinions,
    recordings,
)
from records.store.directory import get_accounts
from records.store.patients import get_patients
from records.supervision import Source

# The timeline events the export takes its times from.
EXPORT_EVENTS = ("accepted", "assigned", "live", "ended")
# Ids per IN (...) list: far below every database's limit on bound parameters.
CHUNK = 500


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), CHUNK):
        yield list(ids[i : i + CHUNK])


def _by_consultation(
    conn: sa.Connection, table: sa.Table, ids: Sequence[str], *where: Any, order: Any
) -> dict[str, list[sa.RowMapping]]:
    out: dict[str, list[sa.RowMapping]] = {}
    for chunk in _chunks(ids):
        query = sa.select(table).where(table.c.consultation_id.in_(chunk), *where).order_by(*order)
        for row in conn.execute(query).mappings():
            out.setdefault(row["consultation_id"], []).append(row)
    return out


def count_requested(
    conn: sa.Connection,
    *,
    start: datetime,
    end: datetime,
    consulted_institution_id: str | None = None,
) -> dict[str, int]:
    """How many consultations were requested in ``[start, end)``, by state."""
    query = (
        sa.select(consultations.c.state, sa.func.count())
        .where(consultations.c.created_at >= start, consultations.c.created_at < end)
        .group_by(consultations.c.state)
    )
    if consulted_institution_id is not None:
        query = query.where(consultations.c.consulted_institution_id == consulted_institution_id)
    return {state: int(n) for state, n in conn.execute(query)}


def supervision_sources(
    conn: sa.Connection,
    *,
    start: datetime,
    end: datetime,
    consulted_institution_id: str | None = None,
) -> list[Source]:
    """Every consultation requested in ``[start, end)`` (of one consulted institution
    when given), oldest first, with its people, times, signed documents and recordings.

    Deadlines are left unset: the workflow, which knows the rules, fills them in.
    """
    query = (
        sa.select(consultations)
        .where(consultations.c.created_at >= start, consultations.c.created_at < end)
        .order_by(consultations.c.created_at, consultations.c.id)
    )
    if consulted_institution_id is not None:
        query = query.where(consultations.c.consulted_institution_id == consulted_institution_id)
    cs = [Consultation.of(r) for r in conn.execute(query).mappings()]
    if not cs:
        return []
    ids = [c.id for c in cs]
    insts = {
        r["id"]: Institution.from_row(r) for r in conn.execute(sa.select(institutions)).mappings()
    }
    dept_ids = sorted({c.department_id for c in cs})
    depts: dict[str, Department] = {}
    for chunk in _chunks(dept_ids):
        for r in conn.execute(sa.select(departments).where(departments.c.id.in_(chunk))).mappings():
            depts[r["id"]] = Department.from_row(r)
    people = get_accounts(
        conn,
        {c.requested_by for c in cs}
        | {c.assigned_specialist_id for c in cs if c.assigned_specialist_id},
    )
    patients = get_patients(conn, {c.patient_id for c in cs})
    events = _by_consultation(
        conn,
        consultation_events,
        ids,
        consultation_events.c.kind.in_(EXPORT_EVENTS),
        order=(consultation_events.c.id,),
    )
    signed = _by_consultation(conn, opinions, ids, order=(opinions.c.signed_at, opinions.c.id))
    recs = _by_consultation(
        conn, recordings, ids, order=(recordings.c.started_at, recordings.c.part)
    )
    return [
        Source(
            consultation=c,
            requesting_institution=insts[c.requesting_institution_id],
            consulted_institution=insts[c.consulted_institution_id],
            department=depts[c.department_id],
            requester=people.get(c.requested_by),
            specialist=people.get(c.assigned_specialist_id or ""),
            # Only the masked number leaves the server (the module docstring of
            # ``records.supervision`` says why).
            patient_id_masked=patients[c.patient_id].national_id_masked,
            events=[Event.from_row(r) for r in events.get(c.id, [])],
            opinions=[Opinion.from_row(r) for r in signed.get(c.id, [])],
            recordings=[Recording.from_row(r) for r in recs.get(c.id, [])],
        )
        for c in cs
    ]
