"""Institutions, departments, accounts and sessions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from records.db import upsert
from records.errors import Conflict
from records.models import (
    Account,
    Department,
    Institution,
)
from records.schema import (
    account_departments,
    accounts,
    departments,
    institutions,
    login_failures,
    sessions,
)
from records.store.base import first_row, new_id

# -- institutions and departments -------------------------------------------------


def add_institution(conn: sa.Connection, *, name: str, kind: str, region: str) -> str:
    """Store an institution and return its id."""
    iid = new_id()
    try:
        conn.execute(institutions.insert().values(id=iid, name=name, kind=kind, region=region))
    except IntegrityError as exc:
        raise Conflict("an institution of that name exists", fields=("name",)) from exc
    return iid


def get_institution(conn: sa.Connection, institution_id: str) -> Institution | None:
    """The institution, or None."""
    row = first_row(conn, sa.select(institutions).where(institutions.c.id == institution_id))
    return Institution.from_row(row) if row else None


def get_institutions(conn: sa.Connection, institution_ids: Iterable[str]) -> dict[str, Institution]:
    """Institutions by id (one query; an unknown id is left out)."""
    ids = list(set(institution_ids))
    if not ids:
        return {}
    rows = conn.execute(sa.select(institutions).where(institutions.c.id.in_(ids)))
    return {r["id"]: Institution.from_row(r) for r in rows.mappings()}


def list_institutions(conn: sa.Connection) -> list[Institution]:
    """Every institution, by name."""
    rows = (conn.execute(sa.select(institutions).order_by(institutions.c.name))).mappings()
    return [Institution.from_row(r) for r in rows]


def add_department(conn: sa.Connection, *, institution_id: str, code: str, name: str) -> str:
    """Store a department and return its id."""
    did = new_id()
    try:
        conn.execute(
            departments.insert().values(id=did, institution_id=institution_id, code=code, name=name)
        )
    except IntegrityError as exc:
        raise Conflict("the institution has a department with that code", fields=("code",)) from exc
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
    phone: str | None = None,
    must_change_password: bool = False,
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
                phone=phone,
                must_change_password=must_change_password,
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


def set_password_hash(conn: sa.Connection, account_id: str, password_hash: str) -> None:
    """Replace an account's password hash (a rehash after a settings change)."""
    conn.execute(
        accounts.update().where(accounts.c.id == account_id).values(password_hash=password_hash)
    )


# -- login failures (per username, known or not) -----------------------------------


def login_locked_until(conn: sa.Connection, username_hash: str) -> datetime | None:
    """Until when logins with this username are refused (None: never locked)."""
    row = conn.execute(
        sa.select(login_failures.c.locked_until).where(
            login_failures.c.username_hash == username_hash
        )
    ).first()
    return row.locked_until if row else None


def count_login_failure(
    conn: sa.Connection, username_hash: str, *, lock_at: int, lock_until: datetime
) -> tuple[int, bool]:
    """Count one wrong password for a username; lock it on the ``lock_at``-th.

    The count is one ``INSERT ... ON CONFLICT DO UPDATE SET failures = failures + 1
    RETURNING``: concurrent wrong guesses each add one, none overwrites another's
    (reading the count and writing it back lost 40 of 60 on PostgreSQL). Locking
    starts the count again, for after the lock.

    Returns:
        The failures counted with this one, and whether this one locked the name.
    """
    counted = (
        upsert(conn, login_failures)
        .values(username_hash=username_hash, failures=1, locked_until=None)
        .on_conflict_do_update(
            index_elements=[login_failures.c.username_hash],
            set_={"failures": login_failures.c.failures + 1},
        )
        .returning(login_failures.c.failures)
    )
    failures = int(conn.execute(counted).scalar_one())
    if failures < lock_at:
        return failures, False
    conn.execute(
        login_failures.update()
        .where(login_failures.c.username_hash == username_hash)
        .values(failures=0, locked_until=lock_until)
    )
    return failures, True


def clear_login_failures(conn: sa.Connection, username_hash: str) -> None:
    """Forget a username's failures (after a successful login)."""
    conn.execute(login_failures.delete().where(login_failures.c.username_hash == username_hash))


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
    second_factor_pending: bool = False,
) -> None:
    """Store a new login session (``second_factor_pending``: the TOTP step is owed)."""
    conn.execute(
        sessions.insert().values(
            token_hash=token_hash,
            account_id=account_id,
            csrf_token=csrf_token,
            created_at=created_at,
            expires_at=expires_at,
            client_addr=client_addr,
            second_factor_pending=second_factor_pending,
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
    keep: str | None = None,
) -> int:
    """Revoke one session (by token hash) or all of an account's (but ``keep``, a
    token hash); return how many."""
    query = sessions.update().where(sessions.c.revoked_at.is_(None)).values(revoked_at=at)
    if keep:
        query = query.where(sessions.c.token_hash != keep)
    if token_hash:
        query = query.where(sessions.c.token_hash == token_hash)
    elif account_id:
        query = query.where(sessions.c.account_id == account_id)
    else:
        raise ValueError("token_hash or account_id is required")
    return (conn.execute(query)).rowcount


def get_accounts(conn: sa.Connection, account_ids: Iterable[str]) -> dict[str, Account]:
    """Accounts by id (without their departments; one query)."""
    ids = list(set(account_ids))
    if not ids:
        return {}
    rows = conn.execute(sa.select(accounts).where(accounts.c.id.in_(ids)))
    return {r["id"]: Account.from_row(r) for r in rows.mappings()}
