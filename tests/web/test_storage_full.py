"""The database's disk is full: reads of patient data are refused with a clear
``storage_full`` (they cannot be audited, so they are not served), the call says
the same and goes on, and everything works again once there is room.

The disk is real: the SQLite database lives on a small tmpfs (``tests/fullfs.py``)
that a filler file takes to its last page. The test is about SQLite's file, so it
runs on SQLite in both passes of the suite (on PostgreSQL too: the demo database
is then built on the tmpfs here instead of copied); PostgreSQL's disk-full error
(SQLSTATE 53100) is recognised in the same one place, ``records.db.disk_full``,
checked at the end against the error SQLAlchemy makes of asyncpg's.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

from records.db import Database, disk_full
from records.demo import load_demo
from web.app import passwords_for
from web.keys import DB
from web.settings import Settings

from ..conftest import DB_NAME, ManualClock, make_settings
from ..fullfs import fill, tmpfs
from ..pgcluster import Databases
from ..scenario import Scenario
from .calls import connect, join

DISK = 2 * 1024 * 1024  # the demo database is ~300 KB, its WAL grows while the test sets up


@pytest.fixture
def settings(
    tmp_path: Path, postgres: Databases | None, request: pytest.FixtureRequest
) -> Iterator[Settings]:
    """The app's settings with its SQLite database on a tmpfs of its own."""
    with tmpfs(tmp_path / "dbdisk", DISK) as disk:
        path = disk / DB_NAME
        settings = make_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{path}")
        if postgres is None:
            shutil.copy(request.getfixturevalue("demo_template"), path)
        else:
            asyncio.run(_demo(settings))
        yield settings


async def _demo(settings: Settings) -> None:
    db = Database(settings.effective_database_url)
    await db.upgrade()
    await load_demo(db, hash_password=passwords_for(settings).hash, clock=ManualClock())
    await db.close()


async def _fill_disk(app: Any) -> Path:
    """Leave the database no room to grow: an empty WAL (every page checkpointed
    into the database file), then a filler to the tmpfs's last page."""
    async with app[DB].read() as conn:
        busy, _log, _done = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()
    assert busy == 0
    return fill(Path(app[DB].engine.url.database).parent)


async def audit_count(app: Any) -> int:
    async with app[DB].read() as conn:
        return int((await conn.exec_driver_sql("SELECT count(*) FROM audit_log")).scalar_one())


async def test_reads_on_a_full_database_disk_are_refused_clearly_and_work_again_with_room(
    scenario: Scenario, app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    c = await scenario.consultation("live", joined=("clinic1",))
    a = c.sockets["clinic1"]
    cardio = await scenario.user("cardio1")
    b = await connect(cardio)
    audited = await audit_count(app)
    caplog.set_level(logging.INFO)
    filler = await _fill_disk(app)

    # Every audited read: refused, in the one error shape, with no patient data.
    # (The replay's open writes its audit entry in one hop on a thread of its
    # own: Database.run_write_at_once.)
    replay = f"{c.url}/replay"
    for user, path in (
        (c.clinic, c.url),
        (c.clinic, "/api/patients"),
        (cardio, c.url),
        (c.clinic, replay),
    ):
        resp = await user.client.get(path)
        body = await resp.json()
        assert resp.status == 503, (path, body)
        assert body == {
            "error": {
                "code": "storage_full",
                "message": "the server's storage is full; nothing can be opened or saved",
                "fields": [],
            }
        }
        assert resp.headers["Content-Type"].startswith("application/json")

    # The call: a chat line is relayed but reported not stored; joining (which
    # writes the join to the timeline) is refused with the code; both sockets
    # stay open and answer.
    await a.send({"type": "chat", "text": "能看到心电图吗", "ref": "r1"})
    error = await a.recv("error")
    assert error["code"] == "chat_not_stored" and error["ref"] == "r1"
    refused = await join(b, c.id, tab="tab-cardio")
    assert refused["type"] == "error" and refused["code"] == "storage_full", refused
    assert [m["type"] for m in await a.until_pong()] == []
    assert [m["type"] for m in await b.until_pong()] == []

    # Told once, in one line, and no traceback for any of it.
    assert [r for r in caplog.records if r.exc_info] == []
    full = [r for r in caplog.records if "disk is full" in r.getMessage()]
    assert len(full) == 1 and full[0].levelno == logging.ERROR
    assert await audit_count(app) == audited  # nothing was served, nothing was written

    # Room again: the same read answers, with its audit entry, and the call goes on.
    filler.unlink()
    status, body = await c.clinic.get(c.url)
    assert status == 200 and body["consultation"]["id"] == c.id
    status, body = await c.clinic.get("/api/patients")
    assert status == 200
    status, body = await c.clinic.get(replay)
    assert status == 200 and body["consultation"]["id"] == c.id
    assert await audit_count(app) >= audited + 3
    joined = await join(b, c.id, tab="tab-cardio")
    assert joined["type"] == "joined", joined
    await a.send({"type": "chat", "text": "能看到心电图吗", "ref": "r2"})
    while (stored := (await a.recv("event"))["event"])["kind"] != "chat":
        pass  # cardio1's join comes first
    assert stored["data"]["ref"] == "r2"
    await b.close()


def test_postgresql_disk_full_is_recognised_as_sqlalchemy_raises_it() -> None:
    """asyncpg's DiskFullError as SQLAlchemy's asyncpg dialect wraps it."""
    raised = asyncpg.exceptions.DiskFullError("could not extend file: No space left on device")
    adapted = AsyncAdapt_asyncpg_dbapi.Error(raised.args[0], raised)
    assert disk_full(sa.exc.DBAPIError("INSERT ...", {}, adapted))
    other = AsyncAdapt_asyncpg_dbapi.Error(
        "unique", asyncpg.exceptions.UniqueViolationError("duplicate key")
    )
    assert not disk_full(sa.exc.DBAPIError("INSERT ...", {}, other))
