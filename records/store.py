"""Storage functions: all SQL of the product lives here and in ``audit.py``.

Every function takes a connection opened by ``Database.read()`` or
``Database.write()``; the caller owns the transaction, so a state change, its
timeline event and its audit entry commit together or not at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from records.errors import Conflict
from records.models import (
    Account,
    Consent,
    Consultation,
    Department,
    Event,
    Institution,
    Opinion,
    Patient,
    Recording,
    RosterEntry,
)
from records.schema import (
    account_departments,
    accounts,
    consents,
    consultation_events,
    consultation_invitees,
    consultations,
    departments,
    institutions,
    opinions,
    patients,
    recordings,
    roster,
    sessions,
)


def new_id() -> str:
    """A random, unguessable identifier (128 bits, hex)."""
    return secrets.token_hex(16)


def first_row(conn: sa.Connection, statement: sa.Select[Any]) -> sa.RowMapping | None:
    """The first row ``statement`` selects, by column name, or None."""
    row: sa.RowMapping | None = (conn.execute(statement)).mappings().first()
    return row


# -- institutions and departments -------------------------------------------------


def add_institution(conn: sa.Connection, *, name: str, kind: str, region: str) -> str:
    """Store an institution and return its id."""
    iid = new_id()
    conn.execute(institutions.insert().values(id=iid, name=name, kind=kind, region=region))
    return iid


def get_institution(conn: sa.Connection, institution_id: str) -> Institution | None:
    """The institution, or None."""
    row = first_row(conn, sa.select(institutions).where(institutions.c.id == institution_id))
    return Institution.from_row(row) if row else None


def list_institutions(conn: sa.Connection) -> list[Institution]:
    """Every institution, by name."""
    rows = (conn.execute(sa.select(institutions).order_by(institutions.c.name))).mappings()
    return [Institution.from_row(r) for r in rows]


def add_department(conn: sa.Connection, *, institution_id: str, code: str, name: str) -> str:
    """Store a department and return its id."""
    did = new_id()
    conn.execute(
        departments.insert().values(id=did, institution_id=institution_id, code=code, name=name)
    )
    return did


def get_department(conn: sa.Connection, department_id: str) -> Department | None:
    """The department, or None."""
    row = first_row(conn, sa.select(departments).where(departments.c.id == department_id))
    return Department.from_row(row) if row else None


def list_departments(
    conn: sa.Connection, *, institution_kind: str | None = None
) -> list[tuple[Department, Institution]]:
    """Departments with their institutions, optionally of one kind of institution."""
    query = (
        sa.select(departments, *[c.label(f"i_{c.name}") for c in institutions.c])
        .join(institutions, institutions.c.id == departments.c.institution_id)
        .order_by(institutions.c.name, departments.c.code)
    )
    if institution_kind:
        query = query.where(institutions.c.kind == institution_kind)
    out = []
    for row in (conn.execute(query)).mappings():
        inst = {c.name: row[f"i_{c.name}"] for c in institutions.c}
        out.append((Department.from_row(row), Institution(**inst)))
    return out


# -- accounts and sessions --------------------------------------------------------


def add_account(
    conn: sa.Connection,
    *,
    username: str,
    password_hash: str,
    display_name: str,
    role: str,
    institution_id: str,
    created_at: datetime,
    licence_no: str | None = None,
    title: str | None = None,
    practice_start: date | None = None,
    department_ids: Iterable[str] = (),
) -> str:
    """Store an account (and the departments it serves); return its id."""
    aid = new_id()
    try:
        conn.execute(
            accounts.insert().values(
                id=aid,
                username=username,
                password_hash=password_hash,
                display_name=display_name,
                role=role,
                institution_id=institution_id,
                licence_no=licence_no,
                title=title,
                practice_start=practice_start,
                created_at=created_at,
            )
        )
    except IntegrityError as exc:
        raise Conflict("username already taken", fields=("username",)) from exc
    for did in department_ids:
        conn.execute(account_departments.insert().values(account_id=aid, department_id=did))
    return aid


def _department_ids(conn: sa.Connection, account_id: str) -> frozenset[str]:
    rows = conn.execute(
        sa.select(account_departments.c.department_id).where(
            account_departments.c.account_id == account_id
        )
    )
    return frozenset(r[0] for r in rows)


def get_account(conn: sa.Connection, account_id: str) -> Account | None:
    """The account with the departments it serves, or None."""
    row = first_row(conn, sa.select(accounts).where(accounts.c.id == account_id))
    if row is None:
        return None
    return Account.of(row, _department_ids(conn, account_id))


def get_login(conn: sa.Connection, username: str) -> tuple[Account, str] | None:
    """The account and its password hash for a username, or None."""
    row = first_row(conn, sa.select(accounts).where(accounts.c.username == username))
    if row is None:
        return None
    return Account.of(row, _department_ids(conn, row["id"])), row["password_hash"]


def set_login_state(
    conn: sa.Connection,
    account_id: str,
    *,
    failed_logins: int,
    locked_until: datetime | None,
    password_hash: str | None = None,
) -> None:
    """Record the outcome of a login attempt (failure count, lock-out, rehash)."""
    values: dict[str, Any] = {"failed_logins": failed_logins, "locked_until": locked_until}
    if password_hash is not None:
        values["password_hash"] = password_hash
    conn.execute(accounts.update().where(accounts.c.id == account_id).values(**values))


def list_accounts(
    conn: sa.Connection,
    *,
    institution_id: str | None = None,
    role: str | None = None,
    department_id: str | None = None,
) -> list[Account]:
    """Active accounts matching every given filter, by display name."""
    query = sa.select(accounts).where(accounts.c.active.is_(True))
    if institution_id:
        query = query.where(accounts.c.institution_id == institution_id)
    if role:
        query = query.where(accounts.c.role == role)
    if department_id:
        query = query.where(
            accounts.c.id.in_(
                sa.select(account_departments.c.account_id).where(
                    account_departments.c.department_id == department_id
                )
            )
        )
    rows = (conn.execute(query.order_by(accounts.c.display_name))).mappings().all()
    return [Account.of(r, _department_ids(conn, r["id"])) for r in rows]


def add_session(
    conn: sa.Connection,
    *,
    token_hash: str,
    account_id: str,
    csrf_token: str,
    created_at: datetime,
    expires_at: datetime,
    client_addr: str | None,
) -> None:
    """Store a new login session."""
    conn.execute(
        sessions.insert().values(
            token_hash=token_hash,
            account_id=account_id,
            csrf_token=csrf_token,
            created_at=created_at,
            expires_at=expires_at,
            client_addr=client_addr,
        )
    )


def get_session(conn: sa.Connection, token_hash: str) -> dict[str, Any] | None:
    """The session row for a token hash, or None."""
    row = first_row(conn, sa.select(sessions).where(sessions.c.token_hash == token_hash))
    return dict(row) if row else None


def revoke_sessions(
    conn: sa.Connection,
    at: datetime,
    *,
    token_hash: str | None = None,
    account_id: str | None = None,
) -> int:
    """Revoke one session (by token hash) or all of an account's; return how many."""
    query = sessions.update().where(sessions.c.revoked_at.is_(None)).values(revoked_at=at)
    if token_hash:
        query = query.where(sessions.c.token_hash == token_hash)
    elif account_id:
        query = query.where(sessions.c.account_id == account_id)
    else:
        raise ValueError("token_hash or account_id is required")
    return (conn.execute(query)).rowcount


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


def get_patients(conn: sa.Connection, patient_ids: Iterable[str]) -> dict[str, Patient]:
    """Patients by id (one query)."""
    ids = list(set(patient_ids))
    if not ids:
        return {}
    rows = conn.execute(sa.select(patients).where(patients.c.id.in_(ids)))
    return {r["id"]: Patient.from_row(r) for r in rows.mappings()}


def get_accounts(conn: sa.Connection, account_ids: Iterable[str]) -> dict[str, Account]:
    """Accounts by id (without their departments; one query)."""
    ids = list(set(account_ids))
    if not ids:
        return {}
    rows = conn.execute(sa.select(accounts).where(accounts.c.id.in_(ids)))
    return {r["id"]: Account.from_row(r) for r in rows.mappings()}


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
