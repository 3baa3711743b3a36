"""Migration 0009 (event kind ``completion_overdue``) down and up again, with data.

Down to 0008 the ``completion_overdue`` entries go (the older CHECK on
``consultation_events.kind`` refuses them; the deadline check puts them back
while the consultation is still late); every other row stays. Up again the
widened CHECK accepts them and still refuses a word outside the vocabulary. On
the suite's database (SQLite by default, PostgreSQL in ``make test-postgres``).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from records.db import Database
from records.schema import consultation_events

from .test_vocab_migration import AT, _fill, _migrate, _snapshot

CID = "a" * 32  # the consultation _fill makes


def _flag(conn: sa.Connection) -> None:
    conn.execute(
        consultation_events.insert().values(
            consultation_id=CID,
            at=AT,
            kind="completion_overdue",
            actor_id=None,
            data={"due_at": AT.isoformat(), "state": "accepted"},
        )
    )


async def _kinds(db: Database) -> list[str]:
    async with db.read() as conn:
        rows = await conn.execute(sa.select(consultation_events.c.kind))
        return [r.kind for r in rows]


async def test_down_to_0008_and_up_again(db: Database) -> None:
    await _fill(db)
    before = await _snapshot(db)
    await db.run_write(_flag)
    assert "completion_overdue" in await _kinds(db)

    await _migrate(db, command.downgrade, "0008")
    # Everything else is as it was before the flag (the flag went).
    assert await _snapshot(db) == before
    with pytest.raises(sa.exc.IntegrityError, match=r"ck_consultation_events_kind|CHECK"):
        await db.run_write(_flag)

    await _migrate(db, command.upgrade, "head")
    assert await _snapshot(db) == before
    await db.run_write(_flag)
    assert (await _kinds(db)).count("completion_overdue") == 1

    def bad(conn: sa.Connection) -> None:
        conn.execute(
            consultation_events.insert().values(
                consultation_id=CID, at=AT, kind="overdue_by_a_lot", actor_id=None, data={}
            )
        )

    with pytest.raises(sa.exc.IntegrityError, match=r"ck_consultation_events_kind|CHECK"):
        await db.run_write(bad)
