"""Several processes starting together migrate the database once, and all start.

A deployment starts its web processes and media workers at the same moment, each
calling ``Database.upgrade()``. Without a lock two of them create the same table
and one dies ("already exists"); with it one migrates and the others find the
schema at head.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from records.db import Database, alembic_config

ROOT = Path(__file__).parents[2]
PROCESSES = 4
# Each process gets ready (imports, engine), says so, and migrates on "go": all of
# them hit the empty database within a few milliseconds of each other.
CHILD = """
import asyncio, sys
from records.db import Database
db = Database(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
async def main():
    try:
        await db.upgrade()
    finally:
        await db.close()
asyncio.run(main())
print("done", flush=True)
"""


def test_processes_that_start_together_migrate_once_and_all_come_up(
    empty_database: str,
) -> None:
    children = [
        subprocess.Popen(  # noqa: S603 - this interpreter, fixed code
            [sys.executable, "-c", CHILD, empty_database],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        for _ in range(PROCESSES)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = [child.communicate(timeout=120) for child in children]
    failures = [err for child, (_, err) in zip(children, results, strict=True) if child.returncode]
    assert failures == [], failures[0][-2000:]
    assert all(out.strip() == "done" for out, _ in results)

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert asyncio.run(versions(empty_database)) == [head]


async def versions(url: str) -> list[str]:
    db = Database(url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            return [version for (version,) in rows]
    finally:
        await db.close()
