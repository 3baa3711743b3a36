"""Concurrent appends to the audit chain, from an empty database on.

On PostgreSQL these transactions overlap (SQLite has a single writer): before the
head row came with the schema, concurrent first appends found no head to lock and
14 of 20 failed on the insert of it (issue 15, item 8).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from records import audit
from records.db import Database
from records.schema import audit_log

T = datetime(2026, 1, 1, tzinfo=UTC)
WRITERS = 20


def append(n: int) -> object:
    def work(conn: sa.Connection) -> int:
        return audit.append(
            conn,
            at=T + timedelta(seconds=n),
            actor_id=None,
            action="patient.read",
            object_type="patient",
            object_id=f"{n:032x}",
            detail={"n": n},
        )

    return work


async def test_concurrent_appends_to_an_empty_chain_all_land_in_one_chain(db: Database) -> None:
    seqs = await asyncio.gather(*(db.run_write(append(n)) for n in range(WRITERS)))

    assert sorted(seqs) == list(range(1, WRITERS + 1))
    result = await db.run_read(audit.verify)
    assert result.ok, result.problems
    assert result.entries == WRITERS


async def test_an_empty_chain_verifies_and_grows_from_genesis(db: Database) -> None:
    empty = await db.run_read(audit.verify)
    assert empty.ok and empty.entries == 0

    assert await db.run_write(append(0)) == 1
    async with db.read() as conn:
        prev = await conn.scalar(sa.select(audit_log.c.prev_hash))
    assert prev == audit.GENESIS
    assert (await db.run_read(audit.verify)).ok
