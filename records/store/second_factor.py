"""The TOTP second factor, recovery codes and the sessions' verification state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from records.schema import recovery_codes, second_factors, sessions
from records.store.base import first_row, new_id


def get_second_factor(conn: sa.Connection, account_id: str) -> dict[str, Any] | None:
    """The account's second factor row (enrolled or being enrolled), or None."""
    row = first_row(
        conn, sa.select(second_factors).where(second_factors.c.account_id == account_id)
    )
    return dict(row) if row else None


def start_second_factor(conn: sa.Connection, account_id: str, *, secret: str, at: datetime) -> None:
    """Store a new, unconfirmed second factor (replacing an unconfirmed one)."""
    conn.execute(
        second_factors.delete().where(
            second_factors.c.account_id == account_id, second_factors.c.enrolled_at.is_(None)
        )
    )
    conn.execute(
        second_factors.insert().values(
            account_id=account_id, secret=secret, created_at=at, enrolled_at=None, last_step=None
        )
    )


def confirm_second_factor(conn: sa.Connection, account_id: str, *, at: datetime) -> None:
    """Mark the account's second factor as enrolled."""
    conn.execute(
        second_factors.update()
        .where(second_factors.c.account_id == account_id)
        .values(enrolled_at=at)
    )


def use_step(conn: sa.Connection, account_id: str, step: int) -> bool:
    """Record that the code of time step ``step`` was used; False if it (or a later
    one) was used already.

    One conditional UPDATE: two requests racing with the same code cannot both win.
    """
    last = second_factors.c.last_step
    result = conn.execute(
        second_factors.update()
        .where(
            second_factors.c.account_id == account_id,
            sa.or_(last.is_(None), last < step),
        )
        .values(last_step=step)
    )
    return result.rowcount == 1


def delete_second_factor(conn: sa.Connection, account_id: str) -> bool:
    """Remove the account's second factor and recovery codes; whether it had one."""
    gone = conn.execute(
        second_factors.delete().where(second_factors.c.account_id == account_id)
    ).rowcount
    conn.execute(recovery_codes.delete().where(recovery_codes.c.account_id == account_id))
    return gone > 0


def replace_recovery_codes(
    conn: sa.Connection, account_id: str, hashes: list[str], *, at: datetime
) -> None:
    """Store a new set of recovery code hashes (the old set is dropped)."""
    conn.execute(recovery_codes.delete().where(recovery_codes.c.account_id == account_id))
    for code_hash in hashes:
        conn.execute(
            recovery_codes.insert().values(
                id=new_id(), account_id=account_id, code_hash=code_hash, created_at=at
            )
        )


def unused_recovery_codes(conn: sa.Connection, account_id: str) -> list[tuple[str, str]]:
    """(id, hash) of the account's recovery codes not used yet."""
    rows = conn.execute(
        sa.select(recovery_codes.c.id, recovery_codes.c.code_hash).where(
            recovery_codes.c.account_id == account_id, recovery_codes.c.used_at.is_(None)
        )
    )
    return [(r.id, r.code_hash) for r in rows]


def use_recovery_code(conn: sa.Connection, code_id: str, *, at: datetime) -> bool:
    """Mark one recovery code used; False if it was used already (a race)."""
    result = conn.execute(
        recovery_codes.update()
        .where(recovery_codes.c.id == code_id, recovery_codes.c.used_at.is_(None))
        .values(used_at=at)
    )
    return result.rowcount == 1


def set_session_verified(conn: sa.Connection, token_hash: str, *, at: datetime) -> None:
    """The session's user gave the second factor at ``at``: the session is complete."""
    conn.execute(
        sessions.update()
        .where(sessions.c.token_hash == token_hash)
        .values(second_factor_pending=False, verified_at=at)
    )


def second_factor_secrets(conn: sa.Connection) -> list[tuple[str, str]]:
    """(account id, stored secret) of every second factor, for key rotation."""
    rows = conn.execute(
        sa.select(second_factors.c.account_id, second_factors.c.secret).order_by(
            second_factors.c.account_id
        )
    )
    return [(r.account_id, r.secret) for r in rows]


def set_second_factor_secret(conn: sa.Connection, account_id: str, secret: str) -> None:
    """Store the secret sealed anew (key rotation)."""
    conn.execute(
        second_factors.update()
        .where(second_factors.c.account_id == account_id)
        .values(secret=secret)
    )
