"""Consultations, their invitees, timeline events, opinions and the duty roster."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from records.models import (
    Consultation,
    Event,
    Opinion,
    RosterEntry,
)
from records.schema import (
    consultation_events,
    consultation_invitees,
    consultations,
    opinions,
    roster,
)
from records.store.base import first_row, new_id

# -- consultations ----------------------------------------------------------------


def add_consultation(conn: sa.Connection, **values: Any) -> str:
    """Store a new consultation (state ``requested``) and return its id."""
    cid = new_id()
    now = values["created_at"]
    conn.execute(consultations.insert().values(id=cid, state="requested", updated_at=now, **values))
    return cid


def get_consultation(conn: sa.Connection, consultation_id: str) -> Consultation | None:
    """The consultation, or None."""
    row = first_row(conn, sa.select(consultations).where(consultations.c.id == consultation_id))
    if row is None:
        return None
    invitees = _invitees(conn, [consultation_id])
    return Consultation.of(row, invitees.get(consultation_id, frozenset()))


def lock_consultation(conn: sa.Connection, consultation_id: str) -> None:
    """Lock a consultation's row until the transaction ends (``SELECT ... FOR UPDATE``).

    For changes that read the consultation's people and then add to them: on
    PostgreSQL two such transactions would otherwise both pass the checks (a full
    call took 7 participants). SQLite, with its single writer, needs no lock.
    """
    conn.execute(
        sa.select(consultations.c.id).where(consultations.c.id == consultation_id).with_for_update()
    )


def _invitees(conn: sa.Connection, consultation_ids: list[str]) -> dict[str, frozenset[str]]:
    if not consultation_ids:
        return {}
    rows = conn.execute(
        sa.select(
            consultation_invitees.c.consultation_id, consultation_invitees.c.account_id
        ).where(consultation_invitees.c.consultation_id.in_(consultation_ids))
    )
    out: dict[str, set[str]] = {}
    for cid, aid in rows:
        out.setdefault(cid, set()).add(aid)
    return {cid: frozenset(ids) for cid, ids in out.items()}


def add_invitee(
    conn: sa.Connection,
    *,
    consultation_id: str,
    account_id: str,
    invited_by: str,
    at: datetime,
) -> bool:
    """Invite an account into a consultation's call; False if it already was."""
    exists = conn.execute(
        sa.select(consultation_invitees.c.account_id).where(
            consultation_invitees.c.consultation_id == consultation_id,
            consultation_invitees.c.account_id == account_id,
        )
    )
    if exists.first() is not None:
        return False
    conn.execute(
        consultation_invitees.insert().values(
            consultation_id=consultation_id,
            account_id=account_id,
            invited_by=invited_by,
            invited_at=at,
        )
    )
    return True


URGENCY_ORDER = sa.case(
    {"emergency": 0, "urgent": 1, "routine": 2}, value=consultations.c.urgency, else_=3
)


def list_consultations(
    conn: sa.Connection,
    *,
    requesting_institution_id: str | None = None,
    department_ids: Iterable[str] | None = None,
    assigned_specialist_id: str | None = None,
    invited_account_id: str | None = None,
    states: Sequence[str] | None = None,
    queue_order: bool = False,
    limit: int = 200,
) -> list[Consultation]:
    """Consultations visible through the given filters.

    ``requesting_institution_id``, ``department_ids``, ``assigned_specialist_id``
    and ``invited_account_id`` widen each other (a specialist sees their
    departments' requests, whatever is assigned to them and the calls they were
    invited to); ``states`` narrows. ``queue_order``
    sorts by urgency and then age (oldest first), otherwise newest first.
    """
    query = sa.select(consultations)
    scope: list[sa.ColumnElement[bool]] = []
    if requesting_institution_id is not None:
        scope.append(consultations.c.requesting_institution_id == requesting_institution_id)
    if department_ids is not None:
        scope.append(consultations.c.department_id.in_(list(department_ids)))
    if assigned_specialist_id is not None:
        scope.append(consultations.c.assigned_specialist_id == assigned_specialist_id)
    if invited_account_id is not None:
        scope.append(
            consultations.c.id.in_(
                sa.select(consultation_invitees.c.consultation_id).where(
                    consultation_invitees.c.account_id == invited_account_id
                )
            )
        )
    if scope:
        query = query.where(sa.or_(*scope))
    if states is not None:
        query = query.where(consultations.c.state.in_(list(states)))
    if queue_order:
        query = query.order_by(URGENCY_ORDER, consultations.c.created_at)
    else:
        query = query.order_by(consultations.c.created_at.desc())
    rows = (conn.execute(query.limit(limit))).mappings().all()
    invitees = _invitees(conn, [r["id"] for r in rows])
    return [Consultation.of(r, invitees.get(r["id"], frozenset())) for r in rows]


def change_state(
    conn: sa.Connection,
    consultation_id: str,
    *,
    from_states: Iterable[str],
    to_state: str,
    at: datetime,
    **values: Any,
) -> bool:
    """Move a consultation to ``to_state`` if it is still in one of ``from_states``.

    The check and the change are one conditional UPDATE, so of two concurrent
    callers (two specialists accepting at once) exactly one succeeds, on SQLite
    and on PostgreSQL alike.

    Returns:
        True if this call changed the row.
    """
    result = conn.execute(
        consultations.update()
        .where(consultations.c.id == consultation_id, consultations.c.state.in_(list(from_states)))
        .values(state=to_state, updated_at=at, **values)
    )
    return result.rowcount == 1


def set_consultation(conn: sa.Connection, consultation_id: str, **values: Any) -> None:
    """Update columns of a consultation without a state change."""
    conn.execute(
        consultations.update().where(consultations.c.id == consultation_id).values(**values)
    )


def overdue_requests(conn: sa.Connection, *, cutoffs: dict[str, datetime]) -> list[Consultation]:
    """Requests still waiting (``requested``) that were made before their urgency's cutoff."""
    conditions = [
        sa.and_(consultations.c.urgency == urgency, consultations.c.created_at <= cutoff)
        for urgency, cutoff in cutoffs.items()
    ]
    rows = conn.execute(
        sa.select(consultations).where(consultations.c.state == "requested", sa.or_(*conditions))
    )
    return [Consultation.from_row(r) for r in rows.mappings()]


def open_without_event(
    conn: sa.Connection, *, states: Sequence[str], cutoffs: dict[str, datetime], kind: str
) -> list[Consultation]:
    """Consultations in ``states``, made before their urgency's cutoff, whose
    timeline has no event ``kind`` yet (what a periodic check has not flagged)."""
    conditions = [
        sa.and_(consultations.c.urgency == urgency, consultations.c.created_at <= cutoff)
        for urgency, cutoff in cutoffs.items()
    ]
    flagged = sa.exists().where(
        consultation_events.c.consultation_id == consultations.c.id,
        consultation_events.c.kind == kind,
    )
    rows = conn.execute(
        sa.select(consultations)
        .where(consultations.c.state.in_(list(states)), sa.or_(*conditions), ~flagged)
        .order_by(consultations.c.created_at, consultations.c.id)
    )
    return [Consultation.from_row(r) for r in rows.mappings()]


def add_event(
    conn: sa.Connection,
    *,
    consultation_id: str,
    at: datetime,
    kind: str,
    actor_id: str | None,
    data: dict[str, Any] | None = None,
) -> int:
    """Append an event to a consultation's timeline and return its id."""
    result = conn.execute(
        consultation_events.insert().values(
            consultation_id=consultation_id, at=at, kind=kind, actor_id=actor_id, data=data or {}
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None  # noqa: S101 - an INSERT always has one
    return int(pk[0])


def list_events(conn: sa.Connection, consultation_id: str, *, after_id: int = 0) -> list[Event]:
    """A consultation's timeline in order (optionally only events after ``after_id``)."""
    rows = conn.execute(
        sa.select(consultation_events)
        .where(
            consultation_events.c.consultation_id == consultation_id,
            consultation_events.c.id > after_id,
        )
        .order_by(consultation_events.c.id)
    )
    return [Event.from_row(r) for r in rows.mappings()]


def add_opinion(
    conn: sa.Connection,
    *,
    consultation_id: str,
    author_id: str,
    kind: str,
    body: dict[str, Any],
    signed_at: datetime,
    sha256: str,
    parent_id: str | None = None,
) -> str:
    """Store a signed opinion, referral or addendum (never updated afterwards)."""
    oid = new_id()
    conn.execute(
        opinions.insert().values(
            id=oid,
            consultation_id=consultation_id,
            author_id=author_id,
            kind=kind,
            parent_id=parent_id,
            body=body,
            signed_at=signed_at,
            sha256=sha256,
        )
    )
    return oid


def list_opinions(conn: sa.Connection, consultation_id: str) -> list[Opinion]:
    """A consultation's signed documents in signing order."""
    rows = conn.execute(
        sa.select(opinions)
        .where(opinions.c.consultation_id == consultation_id)
        .order_by(opinions.c.signed_at)
    )
    return [Opinion.from_row(r) for r in rows.mappings()]


# -- roster -----------------------------------------------------------------------


def add_roster_entry(
    conn: sa.Connection,
    *,
    department_id: str,
    account_id: str,
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
) -> str:
    """Put a specialist on duty for a department; return the entry's id."""
    rid = new_id()
    conn.execute(
        roster.insert().values(
            id=rid,
            department_id=department_id,
            account_id=account_id,
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=created_by,
        )
    )
    return rid


def list_roster(
    conn: sa.Connection, department_ids: Iterable[str], *, ending_after: datetime
) -> list[RosterEntry]:
    """Roster entries of the departments that have not ended yet, by start."""
    rows = conn.execute(
        sa.select(roster)
        .where(roster.c.department_id.in_(list(department_ids)), roster.c.ends_at > ending_after)
        .order_by(roster.c.starts_at)
    )
    return [RosterEntry.from_row(r) for r in rows.mappings()]


def get_roster_entry(conn: sa.Connection, entry_id: str) -> RosterEntry | None:
    """The roster entry, or None."""
    row = first_row(conn, sa.select(roster).where(roster.c.id == entry_id))
    return RosterEntry.from_row(row) if row else None


def delete_roster_entry(conn: sa.Connection, entry_id: str) -> None:
    """Take an entry off the roster (the audit log keeps the trace)."""
    conn.execute(roster.delete().where(roster.c.id == entry_id))
