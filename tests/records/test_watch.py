"""``Database.watch``: the count of writes to some tables that a cache relies on.

A cache of the sessions (``signaling/workflow/auth.py``) keeps an entry only if
no write to the sessions or accounts moved the count while it was read, so the
count must move for every write to them, including the end of its transaction,
and for nothing else the server does all the time (audit entries, chat).
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from records.db import Database, Watch

ADD_INSTITUTION = sa.text(
    "INSERT INTO institutions (id, name, kind, region) "
    "VALUES ('i1', '青山县人民医院', 'county_hospital', '青山县')"
)
ADD_DEPARTMENT = sa.text(
    "INSERT INTO departments (id, institution_id, code, name) "
    "VALUES ('d1', 'i1', 'cardio', '心内科')"
)


def delete_departments_then_fail(conn: sa.Connection) -> None:
    """A work function that writes to the watched table, then fails."""
    conn.execute(sa.text("DELETE FROM departments"))
    raise RuntimeError("the work failed after its write")


async def department_names(db: Database) -> list[str]:
    return await db.run_read(
        lambda conn: list(conn.execute(sa.text("SELECT name FROM departments")).scalars())
    )


@pytest.mark.parametrize(
    ("statement", "writes"),
    [
        ("UPDATE accounts SET active=? WHERE accounts.id = ?", True),
        ('UPDATE "sessions" SET revoked_at=$1', True),
        ("INSERT INTO sessions (token_hash) VALUES (?)", True),
        ("insert or replace into accounts (id) values (?)", True),
        ("DELETE FROM sessions WHERE expires_at < ?", True),
        ("ALTER TABLE accounts ADD COLUMN x INTEGER", True),
        ("WITH gone AS (SELECT 1) DELETE FROM sessions", True),
        ("SELECT accounts.id FROM accounts JOIN sessions ON 1", False),
        ("  select * from sessions", False),
        ("INSERT INTO audit_log (seq, detail) VALUES (?, ?)", False),
        ("INSERT INTO precall_sessions (id) VALUES (?)", False),
        (
            "UPDATE consultations SET state=? WHERE consultations.assignee_id IN "
            "(SELECT accounts.id FROM accounts)",
            False,
        ),
        ("BEGIN IMMEDIATE", False),
        ("PRAGMA foreign_keys=ON", False),
    ],
)
def test_a_watch_knows_which_statements_write_to_its_tables(statement: str, writes: bool) -> None:
    assert Watch(("sessions", "accounts")).written_by(statement) is writes


async def test_the_count_moves_again_once_the_write_is_committed(db: Database) -> None:
    watch = db.watch("departments")
    inside: list[int] = []
    after: list[int] = []
    watch.after_write.append(lambda: after.append(watch.generation))

    def add_institution(conn: sa.Connection) -> None:
        conn.execute(ADD_INSTITUTION)

    def add_department(conn: sa.Connection) -> None:
        conn.execute(ADD_DEPARTMENT)
        inside.append(watch.generation)

    before = watch.generation
    # A write to another table, and reads, leave the count alone.
    await db.run_write(add_institution)
    await db.run_read(lambda conn: conn.execute(sa.text("SELECT * FROM departments")).all())
    assert watch.generation == before and after == []

    await db.run_write(add_department)
    assert inside == [before + 1]  # moved by the statement, inside the transaction
    # And again once it ended; the callback (a notice to other processes) ran then.
    assert watch.generation == before + 2 and after == [before + 2]
    async with db.read() as conn:
        names = (await conn.execute(sa.text("SELECT name FROM departments"))).scalars()
        assert list(names) == ["心内科"]


async def test_a_write_that_fails_still_moves_the_count(db: Database) -> None:
    """Rolled back or not, a read during it must not be kept: the count moves at
    the statement and at the end."""
    watch = db.watch("departments")
    before = watch.generation

    with pytest.raises(RuntimeError):
        await db.run_write(delete_departments_then_fail)
    assert watch.generation == before + 2


async def test_a_write_at_once_moves_the_count_as_a_write_does(
    db: Database, on_postgres: bool
) -> None:
    """``run_write_at_once`` (the audited open of a replay) runs its transaction on
    a thread of its own on SQLite: the count a cache relies on moves all the same,
    twice by the time it returns, whether the work committed or failed."""
    watch = db.watch("departments")
    after: list[int] = []
    watch.after_write.append(lambda: after.append(watch.generation))
    loop_thread = threading.get_ident()
    ran_on: list[int] = []

    def add(conn: sa.Connection) -> str:
        ran_on.append(threading.get_ident())
        conn.execute(ADD_INSTITUTION)
        conn.execute(ADD_DEPARTMENT)
        return "added"

    before = watch.generation
    assert await db.run_write_at_once(add) == "added"
    assert watch.generation == before + 2 and after == [before + 2]
    # The whole transaction off the event loop on SQLite; PostgreSQL's is run_write's.
    assert (ran_on[0] == loop_thread) is on_postgres
    assert await department_names(db) == ["心内科"]

    with pytest.raises(RuntimeError):
        await db.run_write_at_once(delete_departments_then_fail)
    assert watch.generation == before + 4
    assert await department_names(db) == ["心内科"]  # rolled back
