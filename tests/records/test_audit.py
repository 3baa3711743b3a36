"""The audit chain finds every edited, inserted or removed entry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from records import audit
from records.db import Database
from records.schema import audit_log

T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def db(empty_database: str) -> AsyncIterator[Database]:
    # On the suite's database: the PostgreSQL pass checks the chain there too.
    database = Database(empty_database)
    await database.upgrade()

    def _write1(conn: Any) -> Any:
        for n in range(10):
            audit.append(
                conn,
                at=T + timedelta(seconds=n),
                actor_id="a" * 32,
                action="patient.read",
                object_type="patient",
                object_id=f"{n:032x}",
                client_addr="127.0.0.1",
                detail={"n": n},
            )

    await database.run_write(_write1)
    yield database
    await database.close()


async def verify(db: Database) -> audit.Verification:
    return await db.run_read(audit.verify)


async def test_untouched_chain_verifies(db: Database) -> None:
    result = await verify(db)
    assert result.ok and result.entries == 10


@pytest.mark.parametrize(
    "column, value",
    [
        ("detail", {"n": 99}),
        ("actor_id", "b" * 32),
        ("action", "patient.update"),
        ("object_id", "f" * 32),
        ("client_addr", "10.9.9.9"),
        ("at", T + timedelta(days=1)),
    ],
)
async def test_an_edited_entry_is_found(db: Database, column: str, value: object) -> None:
    def _write2(conn: Any) -> Any:
        conn.execute(audit_log.update().where(audit_log.c.seq == 4).values({column: value}))

    await db.run_write(_write2)
    result = await verify(db)
    assert not result.ok
    assert any(p.startswith("entry 4:") for p in result.problems), result.problems


async def test_an_edit_that_also_rewrites_the_hash_breaks_the_next_link(db: Database) -> None:
    def _write3(conn: Any) -> Any:
        row = (conn.execute(sa.select(audit_log).where(audit_log.c.seq == 4))).mappings().one()
        forged = dict(row, detail={"n": 99})
        forged["hash"] = audit.entry_hash(
            **{
                k: forged[k]
                for k in (
                    "seq",
                    "at",
                    "actor_id",
                    "action",
                    "object_type",
                    "object_id",
                    "client_addr",
                    "detail",
                    "prev_hash",
                )
            }
        )
        conn.execute(
            audit_log.update()
            .where(audit_log.c.seq == 4)
            .values(detail=forged["detail"], hash=forged["hash"])
        )

    await db.run_write(_write3)
    result = await verify(db)
    assert any(p.startswith("entry 5:") and "link" in p for p in result.problems)


async def test_a_removed_entry_is_found(db: Database) -> None:
    def _write4(conn: Any) -> Any:
        conn.execute(audit_log.delete().where(audit_log.c.seq == 6))

    await db.run_write(_write4)
    result = await verify(db)
    assert any(p.startswith("entry 7:") for p in result.problems), result.problems


async def test_removing_the_newest_entries_is_found(db: Database) -> None:
    def _write5(conn: Any) -> Any:
        conn.execute(audit_log.delete().where(audit_log.c.seq >= 9))

    await db.run_write(_write5)
    result = await verify(db)
    assert not result.ok
    assert "head records entry 10" in result.problems[-1]


async def test_an_inserted_entry_is_found(db: Database) -> None:
    def _write6(conn: Any) -> Any:
        # Make room by renumbering, as a forger would, then insert a fake entry.
        for seq in range(10, 5, -1):
            conn.execute(audit_log.update().where(audit_log.c.seq == seq).values(seq=seq + 1))
        conn.execute(
            audit_log.insert().values(
                seq=6,
                at=T,
                actor_id=None,
                action="patient.read",
                object_type="patient",
                object_id=None,
                client_addr=None,
                detail={},
                prev_hash="0" * 64,
                hash="0" * 64,
            )
        )

    await db.run_write(_write6)
    result = await verify(db)
    assert not result.ok
    assert any(p.startswith("entry 6:") for p in result.problems)


async def test_appending_continues_the_chain_across_transactions(db: Database) -> None:
    def _write7(conn: Any) -> int:
        return audit.append(conn, at=T, actor_id=None, action="x", object_type="system")

    assert await db.run_write(_write7) == 11
    assert (await verify(db)).ok
