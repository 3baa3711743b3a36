"""Administration's writes: institutions, agreements, departments, accounts.

Accounts and agreements are never deleted: an account is deactivated (its name
stays on every timeline and audit entry), an agreement is ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from records.errors import Conflict
from records.models import Account, Agreement
from records.schema import account_departments, accounts, agreements, departments, institutions
from records.store.base import first_row, new_id


def update_institution(conn: sa.Connection, institution_id: str, **values: Any) -> None:
    """Change an institution's name, kind or region."""
    try:
        conn.execute(
            institutions.update().where(institutions.c.id == institution_id).values(**values)
        )
    except IntegrityError as exc:
        raise Conflict("an institution of that name exists", fields=("name",)) from exc


def institution_by_name(conn: sa.Connection, name: str) -> str | None:
    """The id of the institution called ``name``, or None."""
    row = conn.execute(sa.select(institutions.c.id).where(institutions.c.name == name)).first()
    return str(row[0]) if row else None


def update_department(conn: sa.Connection, department_id: str, *, name: str) -> None:
    """Rename a department (its code stays: other systems know it by the code)."""
    conn.execute(departments.update().where(departments.c.id == department_id).values(name=name))


def department_by_code(conn: sa.Connection, institution_id: str, code: str) -> str | None:
    """The id of the department ``code`` of an institution, or None."""
    row = conn.execute(
        sa.select(departments.c.id).where(
            departments.c.institution_id == institution_id, departments.c.code == code
        )
    ).first()
    return str(row[0]) if row else None


# -- agreements ---------------------------------------------------------------------


def add_agreement(
    conn: sa.Connection,
    *,
    requesting_institution_id: str,
    consulting_institution_id: str,
    kind: str,
    since: date,
    created_at: datetime,
) -> str:
    """Store an agreement and return its id."""
    aid = new_id()
    conn.execute(
        agreements.insert().values(
            id=aid,
            requesting_institution_id=requesting_institution_id,
            consulting_institution_id=consulting_institution_id,
            kind=kind,
            since=since,
            created_at=created_at,
        )
    )
    return aid


def get_agreement(conn: sa.Connection, agreement_id: str) -> Agreement | None:
    """The agreement, or None."""
    row = first_row(conn, sa.select(agreements).where(agreements.c.id == agreement_id))
    return Agreement.from_row(row) if row else None


def end_agreement(conn: sa.Connection, agreement_id: str, at: datetime) -> bool:
    """End an active agreement; False when it was ended already."""
    result = conn.execute(
        agreements.update()
        .where(agreements.c.id == agreement_id, agreements.c.ended_at.is_(None))
        .values(ended_at=at)
    )
    return bool(result.rowcount)


def list_agreements(conn: sa.Connection, *, active_only: bool = False) -> list[Agreement]:
    """Agreements, newest first."""
    query = sa.select(agreements).order_by(agreements.c.created_at.desc(), agreements.c.id)
    if active_only:
        query = query.where(agreements.c.ended_at.is_(None))
    return [Agreement.from_row(r) for r in conn.execute(query).mappings()]


def active_agreement(
    conn: sa.Connection, requesting_institution_id: str, consulting_institution_id: str
) -> Agreement | None:
    """An active agreement that lets one institution ask the other, or None."""
    row = first_row(
        conn,
        sa.select(agreements).where(
            agreements.c.requesting_institution_id == requesting_institution_id,
            agreements.c.consulting_institution_id == consulting_institution_id,
            agreements.c.ended_at.is_(None),
        ),
    )
    return Agreement.from_row(row) if row else None


def consulted_institutions(conn: sa.Connection, requesting_institution_id: str) -> set[str]:
    """The institutions ``requesting_institution_id`` may ask now."""
    rows = conn.execute(
        sa.select(agreements.c.consulting_institution_id).where(
            agreements.c.requesting_institution_id == requesting_institution_id,
            agreements.c.ended_at.is_(None),
        )
    )
    return {str(r[0]) for r in rows}


# -- accounts -----------------------------------------------------------------------


def count_accounts(conn: sa.Connection, *, role: str | None = None) -> int:
    """How many accounts there are (of one role)."""
    query = sa.select(sa.func.count()).select_from(accounts)
    if role:
        query = query.where(accounts.c.role == role)
    return int(conn.execute(query).scalar_one())


def existing_usernames(conn: sa.Connection, usernames: Iterable[str]) -> set[str]:
    """Which of ``usernames`` are taken."""
    names = list(set(usernames))
    if not names:
        return set()
    rows = conn.execute(sa.select(accounts.c.username).where(accounts.c.username.in_(names)))
    return {str(r[0]) for r in rows}


def list_all_accounts(
    conn: sa.Connection,
    *,
    institution_id: str | None = None,
    role: str | None = None,
    active: bool | None = None,
    text: str | None = None,
) -> list[Account]:
    """Accounts, active or not, matching every given filter, by institution and name."""
    query = sa.select(accounts)
    if institution_id:
        query = query.where(accounts.c.institution_id == institution_id)
    if role:
        query = query.where(accounts.c.role == role)
    if active is not None:
        query = query.where(accounts.c.active.is_(active))
    if text:
        like = f"%{text}%"
        query = query.where(
            sa.or_(
                accounts.c.username.like(like),
                accounts.c.display_name.like(like),
                accounts.c.licence_no.like(like),
            )
        )
    rows = conn.execute(
        query.order_by(accounts.c.institution_id, accounts.c.display_name)
    ).mappings()
    all_rows = list(rows)
    ids = [r["id"] for r in all_rows]
    served: dict[str, set[str]] = {i: set() for i in ids}
    if ids:
        for aid, did in conn.execute(
            sa.select(account_departments.c.account_id, account_departments.c.department_id).where(
                account_departments.c.account_id.in_(ids)
            )
        ):
            served[aid].add(did)
    return [Account.of(r, frozenset(served[r["id"]])) for r in all_rows]


def update_account(
    conn: sa.Connection,
    account_id: str,
    *,
    department_ids: Iterable[str] | None = None,
    **values: Any,
) -> None:
    """Change an account's fields and (when given) the departments it serves."""
    if values:
        conn.execute(accounts.update().where(accounts.c.id == account_id).values(**values))
    if department_ids is not None:
        conn.execute(
            account_departments.delete().where(account_departments.c.account_id == account_id)
        )
        for did in department_ids:
            conn.execute(
                account_departments.insert().values(account_id=account_id, department_id=did)
            )


def set_password(
    conn: sa.Connection, account_id: str, password_hash: str, *, must_change: bool
) -> None:
    """Replace an account's password; ``must_change`` forces a new one at the next login."""
    conn.execute(
        accounts.update()
        .where(accounts.c.id == account_id)
        .values(password_hash=password_hash, must_change_password=must_change)
    )
