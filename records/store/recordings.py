"""Recorded legs of a call and the search over recorded consultations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from records.models import (
    Consultation,
    Recording,
)
from records.schema import (
    consultation_invitees,
    consultations,
    recordings,
)
from records.store.base import first_row, new_id
from records.store.consultations import _invitees

# -- recordings -------------------------------------------------------------------


def next_recording_part(conn: sa.Connection, consultation_id: str, participant_id: str) -> int:
    """The part number for a participant's next recording leg in a consultation."""
    current = (
        conn.execute(
            sa.select(sa.func.max(recordings.c.part)).where(
                recordings.c.consultation_id == consultation_id,
                recordings.c.participant_id == participant_id,
            )
        )
    ).scalar()
    return int(current or 0) + 1


def add_recording(conn: sa.Connection, **values: Any) -> str:
    """Store a recording that has started (status ``recording``)."""
    rid = new_id()
    conn.execute(recordings.insert().values(id=rid, status="recording", **values))
    return rid


def update_recording(conn: sa.Connection, recording_id: str, **values: Any) -> None:
    """Record how a recording ended (finished, recovered, failed, purged)."""
    conn.execute(recordings.update().where(recordings.c.id == recording_id).values(**values))


def get_recording(conn: sa.Connection, recording_id: str) -> Recording | None:
    """The recording, or None."""
    row = first_row(conn, sa.select(recordings).where(recordings.c.id == recording_id))
    return Recording.from_row(row) if row else None


def recording_by_path(conn: sa.Connection, path: str) -> Recording | None:
    """The recording stored at ``path`` (relative to the recordings directory), or None."""
    row = first_row(conn, sa.select(recordings).where(recordings.c.path == path))
    return Recording.from_row(row) if row else None


def list_recordings(
    conn: sa.Connection,
    *,
    consultation_id: str | None = None,
    statuses: Sequence[str] | None = None,
) -> list[Recording]:
    """Recordings, oldest first, optionally of one consultation and in some statuses."""
    query = sa.select(recordings).order_by(recordings.c.started_at, recordings.c.part)
    if consultation_id is not None:
        query = query.where(recordings.c.consultation_id == consultation_id)
    if statuses is not None:
        query = query.where(recordings.c.status.in_(list(statuses)))
    rows = conn.execute(query)
    return [Recording.from_row(r) for r in rows.mappings()]


def find_recorded_consultations(
    conn: sa.Connection,
    *,
    consulted_institution_id: str | None = None,
    participant_scope: tuple[str, str] | None = None,
    started_from: datetime | None = None,
    started_to: datetime | None = None,
    department_id: str | None = None,
    clinic_id: str | None = None,
    specialist_id: str | None = None,
    min_duration_ms: int | None = None,
    max_duration_ms: int | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[int, list[tuple[Consultation, datetime, int, int]]]:
    """Consultations with kept recordings, newest first, with paging.

    ``participant_scope`` = (account id, institution id) limits to consultations
    the account took part in (its clinic's requests, assigned, invited).
    Returns the total count and, per consultation on the page, the first
    recording's start, the longest recording (ms) and the number of recordings.
    """
    kept = recordings.c.status.in_(["finished", "recovered"])
    agg = (
        sa.select(
            recordings.c.consultation_id.label("cid"),
            sa.func.min(recordings.c.started_at).label("first_start"),
            sa.func.max(recordings.c.duration_ms).label("longest"),
            sa.func.count().label("n"),
        )
        .where(kept)
        .group_by(recordings.c.consultation_id)
        .subquery()
    )
    query = sa.select(consultations, agg.c.first_start, agg.c.longest, agg.c.n).join(
        agg, agg.c.cid == consultations.c.id
    )
    if consulted_institution_id is not None:
        query = query.where(consultations.c.consulted_institution_id == consulted_institution_id)
    if participant_scope is not None:
        account_id, institution_id = participant_scope
        query = query.where(
            sa.or_(
                consultations.c.requesting_institution_id == institution_id,
                consultations.c.assigned_specialist_id == account_id,
                consultations.c.id.in_(
                    sa.select(consultation_invitees.c.consultation_id).where(
                        consultation_invitees.c.account_id == account_id
                    )
                ),
            )
        )
    if started_from is not None:
        query = query.where(agg.c.first_start >= started_from)
    if started_to is not None:
        query = query.where(agg.c.first_start < started_to)
    if department_id is not None:
        query = query.where(consultations.c.department_id == department_id)
    if clinic_id is not None:
        query = query.where(consultations.c.requesting_institution_id == clinic_id)
    if specialist_id is not None:
        query = query.where(consultations.c.assigned_specialist_id == specialist_id)
    if min_duration_ms is not None:
        query = query.where(agg.c.longest >= min_duration_ms)
    if max_duration_ms is not None:
        query = query.where(agg.c.longest <= max_duration_ms)
    total = (conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one()
    rows = (
        (conn.execute(query.order_by(agg.c.first_start.desc()).offset(offset).limit(limit)))
        .mappings()
        .all()
    )
    invitees = _invitees(conn, [r["id"] for r in rows])
    page = [
        (
            Consultation.of(r, invitees.get(r["id"], frozenset())),
            r["first_start"].replace(tzinfo=UTC)
            if r["first_start"].tzinfo is None
            else r["first_start"],
            int(r["longest"] or 0),
            int(r["n"]),
        )
        for r in rows
    ]
    return int(total), page
