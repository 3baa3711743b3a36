"""The facts behind the medical-affairs statistics: one row per consultation.

The figures themselves (rates, percentiles, deadline compliance) are computed
in Python by ``signaling/workflow/stats.py`` from these rows: percentile SQL
differs between SQLite and PostgreSQL, and the deadline rules (working days)
live above this package. The queries here are plain Core (joins, ``GROUP BY``
with ``MIN``/``COUNT``), the same on both databases: one for the consultations
requested in the range, and one each for their timeline's first events, their
first signed outcome and their recording legs, restricted to those ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from records.schema import (
    consultation_events,
    consultations,
    departments,
    institutions,
    opinions,
    recordings,
)
from records.vocab import EventKind, OpinionKind, RecordingStatus

# The timeline events whose first occurrence the statistics need.
ACCEPTING = (EventKind.ACCEPTED, EventKind.ASSIGNED)
CLOSING = (EventKind.DECLINED, EventKind.CANCELLED)
# A recording with one of these on its timeline missed part of the call.
RECORDING_GAPS = (EventKind.RECORDING_INTERRUPTED, EventKind.RECORDING_FAILED)
# Legs whose file was written to the end (a purged one was, before its
# retention date passed). ``recovered`` legs were cut by a server stop.
COMPLETE_LEGS = (RecordingStatus.FINISHED, RecordingStatus.PURGED)


@dataclass(frozen=True, kw_only=True)
class ConsultationFacts:
    """What the statistics need to know about one consultation.

    Times are the first of their kind: ``accepted_at`` the first acceptance or
    assignment, ``live_at`` the first time the call went live, ``completed_at``
    the first signed opinion or referral, ``closed_at`` the decline or
    cancellation (None while the consultation is not closed that way).
    """

    id: str
    created_at: datetime
    urgency: str
    state: str
    department_id: str
    department_name: str
    consulted_institution_id: str
    consulted_institution_name: str
    requesting_institution_id: str
    requesting_institution_name: str
    decline_reason: str | None
    cancel_reason: str | None
    accepted_at: datetime | None
    live_at: datetime | None
    completed_at: datetime | None
    closed_at: datetime | None
    recording_legs: int
    complete_legs: int
    recording_gaps: int


def consultation_facts(
    conn: sa.Connection,
    *,
    since: datetime,
    until: datetime,
    consulted_institution_id: str | None = None,
    department_id: str | None = None,
    requesting_institution_id: str | None = None,
    urgency: str | None = None,
) -> list[ConsultationFacts]:
    """The consultations requested in ``[since, until)`` that match the filters.

    Args:
        since: the first instant counted (timezone-aware).
        until: the first instant no longer counted.
        consulted_institution_id: only those addressed to this hospital (None: all).
        department_id: only those addressed to this department.
        requesting_institution_id: only those requested by this institution.
        urgency: only those of this urgency.

    Returns:
        One ``ConsultationFacts`` per consultation, in order of request.
    """
    c = consultations
    requesting = institutions.alias("requesting")
    consulted = institutions.alias("consulted")
    where: list[Any] = [c.c.created_at >= since, c.c.created_at < until]
    if consulted_institution_id is not None:
        where.append(c.c.consulted_institution_id == consulted_institution_id)
    if department_id is not None:
        where.append(c.c.department_id == department_id)
    if requesting_institution_id is not None:
        where.append(c.c.requesting_institution_id == requesting_institution_id)
    if urgency is not None:
        where.append(c.c.urgency == urgency)
    ids = sa.select(c.c.id).where(*where).scalar_subquery()
    rows = conn.execute(
        sa.select(
            c.c.id,
            c.c.created_at,
            c.c.urgency,
            c.c.state,
            c.c.department_id,
            departments.c.name.label("department_name"),
            c.c.consulted_institution_id,
            consulted.c.name.label("consulted_institution_name"),
            c.c.requesting_institution_id,
            requesting.c.name.label("requesting_institution_name"),
            c.c.decline_reason,
        )
        .join(departments, departments.c.id == c.c.department_id)
        .join(requesting, requesting.c.id == c.c.requesting_institution_id)
        .join(consulted, consulted.c.id == c.c.consulted_institution_id)
        .where(*where)
        .order_by(c.c.created_at, c.c.id)
    ).mappings()
    base = [dict(r) for r in rows]
    if not base:
        return []
    firsts = _first_events(conn, ids)
    cancel_reasons = _cancel_reasons(conn, ids)
    completed = _completions(conn, ids)
    legs = _legs(conn, ids)
    facts = []
    for row in base:
        cid = row["id"]
        first = firsts.get(cid, {})
        accepted = [first[k][0] for k in ACCEPTING if k in first]
        closed = [first[k][0] for k in CLOSING if k in first]
        total, complete = legs.get(cid, (0, 0))
        facts.append(
            ConsultationFacts(
                **row,
                cancel_reason=cancel_reasons.get(cid),
                accepted_at=min(accepted) if accepted else None,
                live_at=first[EventKind.LIVE][0] if EventKind.LIVE in first else None,
                completed_at=completed.get(cid),
                closed_at=min(closed) if closed else None,
                recording_legs=total,
                complete_legs=complete,
                recording_gaps=sum(first[k][1] for k in RECORDING_GAPS if k in first),
            )
        )
    return facts


def _first_events(
    conn: sa.Connection, ids: sa.ScalarSelect[Any]
) -> dict[str, dict[str, tuple[datetime, int]]]:
    """Per consultation and event kind: the first time and how many."""
    e = consultation_events
    kinds: Sequence[str] = (*ACCEPTING, *CLOSING, EventKind.LIVE, *RECORDING_GAPS)
    rows = conn.execute(
        sa.select(e.c.consultation_id, e.c.kind, sa.func.min(e.c.at), sa.func.count())
        .where(e.c.consultation_id.in_(ids), e.c.kind.in_([str(k) for k in kinds]))
        .group_by(e.c.consultation_id, e.c.kind)
    )
    found: dict[str, dict[str, tuple[datetime, int]]] = {}
    for cid, kind, first, count in rows:
        # MIN() takes its column's type: the instant comes back timezone-aware.
        found.setdefault(cid, {})[kind] = (first, int(count))
    return found


def _cancel_reasons(conn: sa.Connection, ids: sa.ScalarSelect[Any]) -> dict[str, str]:
    """The reason given with each cancellation (kept on its timeline event)."""
    e = consultation_events
    rows = conn.execute(
        sa.select(e.c.consultation_id, e.c.data)
        .where(e.c.consultation_id.in_(ids), e.c.kind == EventKind.CANCELLED.value)
        .order_by(e.c.id)
    )
    reasons: dict[str, str] = {}
    for cid, data in rows:
        reason = data.get("reason") if isinstance(data, dict) else None
        if isinstance(reason, str) and cid not in reasons:
            reasons[cid] = reason
    return reasons


def _completions(conn: sa.Connection, ids: sa.ScalarSelect[Any]) -> dict[str, datetime]:
    """The first signed opinion or referral of each consultation (addenda do not count)."""
    o = opinions
    rows = conn.execute(
        sa.select(o.c.consultation_id, sa.func.min(o.c.signed_at))
        .where(
            o.c.consultation_id.in_(ids),
            o.c.kind.in_([OpinionKind.OPINION.value, OpinionKind.REFERRAL.value]),
        )
        .group_by(o.c.consultation_id)
    )
    return {cid: first for cid, first in rows}


def _legs(conn: sa.Connection, ids: sa.ScalarSelect[Any]) -> dict[str, tuple[int, int]]:
    """Per consultation: how many recording legs, and how many were written to the end."""
    r = recordings
    complete = sa.case((r.c.status.in_([s.value for s in COMPLETE_LEGS]), 1), else_=0)
    rows = conn.execute(
        sa.select(r.c.consultation_id, sa.func.count(), sa.func.sum(complete))
        .where(r.c.consultation_id.in_(ids))
        .group_by(r.c.consultation_id)
    )
    return {cid: (int(total), int(done or 0)) for cid, total, done in rows}
