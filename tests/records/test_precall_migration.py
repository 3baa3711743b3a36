"""Migration 0008 (pre-call checks) down and up again, with data in the tables.

Down to 0007 the table goes, and with it the ``precall_checked`` events (the
older CHECK on ``consultation_events.kind`` refuses them); every other row
stays. Up again the table and the widened CHECK are back. On the suite's
database (SQLite by default, PostgreSQL in ``make test-postgres``).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from records.db import Database
from records.schema import consultation_events, precall_checks

from .test_vocab_migration import AT, _fill, _migrate, _snapshot

CID = "a" * 32  # the consultation _fill makes


async def _tables(db: Database) -> set[str]:
    async with db.read() as conn:
        return await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))


async def test_down_to_0007_and_up_again(db: Database) -> None:
    await _fill(db)
    before = await _snapshot(db)

    def add_check(conn: sa.Connection) -> None:
        participant = conn.execute(sa.select(consultation_events.c.actor_id).limit(1)).scalar()
        conn.execute(
            precall_checks.insert().values(
                id="f" * 32,
                consultation_id=CID,
                participant_id=participant,
                checked_at=AT,
                verdict="limited",
                report={"reasons": [{"code": "uplink_low", "mbit": 0.8}]},
            )
        )
        conn.execute(
            consultation_events.insert().values(
                consultation_id=CID,
                at=AT,
                kind="precall_checked",
                actor_id=participant,
                data={"check_id": "f" * 32, "verdict": "limited"},
            )
        )

    await db.run_write(add_check)

    await _migrate(db, command.downgrade, "0007")
    assert "precall_checks" not in await _tables(db)
    # Everything else is as it was before the check (its event went with it).
    assert await _snapshot(db) == before

    await _migrate(db, command.upgrade, "head")
    assert "precall_checks" in await _tables(db)
    assert await _snapshot(db) == before

    # The widened vocabulary and the new table's own CHECK hold again.
    await db.run_write(add_check)
    async with db.read() as conn:
        row = dict((await conn.execute(sa.select(precall_checks))).mappings().one())
    with pytest.raises(sa.exc.IntegrityError, match=r"ck_precall_checks_verdict|CHECK"):
        await db.run_write(
            lambda conn: conn.execute(
                precall_checks.insert().values({**row, "id": "e" * 32, "verdict": "splendid"})
            )
        )
