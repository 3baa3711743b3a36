"""The vocabulary's CHECK constraints: migrated down and up with data in the tables.

SQLite adds a constraint by copying the table; ``consultations`` is pointed at by
events, invitees, opinions and recordings, so the copy is tried here on a
database that holds all of them. Also: the migrated database has exactly the
CHECK constraints that ``records/schema.py`` builds from the enums (alembic's
``compare_metadata`` does not compare CHECKs), so a new enum member without a
migration fails here.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from records.db import Database, alembic_config
from records.demo import load_demo
from records.schema import (
    accounts,
    consents,
    consultation_events,
    consultation_invitees,
    consultations,
    departments,
    metadata,
    opinions,
    patients,
    recordings,
)
from records.vocab import ConsultationState, OpinionKind, RecordingStatus, Relationship

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
# The test goes down to 0004 and up again with a row of every kind: only the
# kinds 0005 knows can exist below a later migration that adds one.
KINDS_IN_0005 = importlib.import_module(
    "records.migrations.versions.0005_vocabulary_checks"
).EVENT_KINDS


class Clock:
    def now(self) -> datetime:
        return AT


def _alembic(target: str, action: Callable[..., None]) -> Callable[[sa.Connection], None]:
    def run(sync_conn: sa.Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        action(cfg, target)

    return run


async def _migrate(db: Database, action: Callable[..., None], target: str) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(_alembic(target, action))


async def _snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order (no rows: a table a later revision
    adds; only the columns the database has: a later revision may add some)."""

    def columns(sync: sa.Connection) -> dict[str, set[str]]:
        inspector = sa.inspect(sync)
        return {
            name: {c["name"] for c in inspector.get_columns(name)}
            for name in inspector.get_table_names()
        }

    async with db.read() as conn:
        present = await conn.run_sync(columns)
        return {
            table.name: sorted(
                (
                    tuple(row)
                    for row in (
                        await conn.execute(
                            sa.select(*[c for c in table.c if c.name in present[table.name]])
                        )
                    ).all()
                ),
                key=repr,
            )
            if table.name in present
            else []
            for table in metadata.sorted_tables
        }


async def _fill(db: Database) -> None:
    """The demo community plus a consultation with everything that points at it."""
    await load_demo(db, hash_password=lambda _p: "not-a-real-hash", clock=Clock())

    def fill(conn: Any) -> None:

        def one(query: Any) -> str:
            return str((conn.execute(query)).scalar_one())

        clinic = one(sa.select(accounts.c.id).where(accounts.c.username == "clinic1"))
        county = one(sa.select(accounts.c.id).where(accounts.c.username == "county1"))
        cardio = one(sa.select(accounts.c.id).where(accounts.c.username == "cardio1"))
        patient, clinic_inst = (
            conn.execute(sa.select(patients.c.id, patients.c.institution_id))
        ).all()[0]
        dept, hospital = (
            conn.execute(
                sa.select(departments.c.id, departments.c.institution_id).where(
                    departments.c.code == "cardiology"
                )
            )
        ).one()
        conn.execute(
            consents.insert().values(
                id="c" * 32,
                patient_id=patient,
                scope_consultation=True,
                scope_recording=True,
                given_by="王某",
                relationship=Relationship.GUARDIAN,
                taken_by=clinic,
                given_at=AT,
            )
        )
        cid = "a" * 32
        conn.execute(
            consultations.insert().values(
                id=cid,
                patient_id=patient,
                requesting_institution_id=clinic_inst,
                requested_by=clinic,
                department_id=dept,
                consulted_institution_id=hospital,
                assigned_specialist_id=cardio,
                urgency="routine",
                reason="胸闷",
                question="是否需要转诊？",
                state=ConsultationState.SIGNED,
                created_at=AT,
                updated_at=AT,
            )
        )
        conn.execute(
            consultation_events.insert(),
            [
                {"consultation_id": cid, "at": AT, "kind": k, "actor_id": clinic, "data": {}}
                for k in KINDS_IN_0005
            ],
        )
        conn.execute(
            consultation_invitees.insert().values(
                consultation_id=cid, account_id=county, invited_by=clinic, invited_at=AT
            )
        )
        conn.execute(
            opinions.insert().values(
                id="b" * 32,
                consultation_id=cid,
                author_id=cardio,
                kind=OpinionKind.OPINION,
                body={"findings": "正常"},
                signed_at=AT,
                sha256="0" * 64,
            )
        )
        conn.execute(
            recordings.insert().values(
                id="d" * 32,
                consultation_id=cid,
                participant_id=cardio,
                part=1,
                path="recordings/x.webm",
                container="webm",
                started_at=AT,
                status=RecordingStatus.FINISHED,
            )
        )

    await db.run_write(fill)


def _normal(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def _checks_in_database(sync_conn: sa.Connection) -> dict[str, set[tuple[str, str]]]:
    inspector = sa.inspect(sync_conn)
    present = set(inspector.get_table_names())
    # A table a later revision adds has no checks yet (it has none of its own either).
    return {
        table.name: {
            (str(c["name"]), _normal(c["sqltext"]))
            for c in inspector.get_check_constraints(table.name)
        }
        if table.name in present
        else set()
        for table in metadata.sorted_tables
    }


def _checks_declared() -> dict[str, set[tuple[str, str]]]:
    return {
        table.name: {
            (str(c.name), _normal(str(c.sqltext)))
            for c in table.constraints
            if isinstance(c, sa.CheckConstraint)
        }
        for table in metadata.sorted_tables
    }


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'v.sqlite3'}")
    await database.upgrade()
    yield database
    await database.close()


async def test_the_database_has_the_checks_the_schema_declares(db: Database) -> None:
    async with db.read() as conn:
        found = await conn.run_sync(_checks_in_database)
    assert found == _checks_declared(), (
        "records/schema.py and the migrations disagree on a CHECK constraint: a new "
        "member of an enum in records/vocab.py needs a migration"
    )
    state_check = dict(found["consultations"])["ck_consultations_state"]
    assert all(f"'{state}'" in state_check for state in ConsultationState)


NEW_IN_0005 = {
    ("consents", "ck_consents_relationship"),
    ("consultations", "ck_consultations_state"),
    ("consultation_events", "ck_consultation_events_kind"),
}
# Tables a later revision creates (with their own checks): absent at 0004.
ADDED_AFTER_0005 = {"precall_checks"}


async def test_down_and_up_again_keep_every_row(db: Database) -> None:
    await _fill(db)
    before = await _snapshot(db)
    assert len(before["consultation_events"]) == len(KINDS_IN_0005)
    assert all(before[t.name] for t in (accounts, consents, opinions, recordings))

    await _migrate(db, command.downgrade, "0004")
    assert await _snapshot(db) == before
    async with db.read() as conn:
        found = await conn.run_sync(_checks_in_database)
    # Only the three new constraints went; the older ones survived the table copy.
    expected = {
        table: {(name, sql) for name, sql in checks if (table, name) not in NEW_IN_0005}
        if table not in ADDED_AFTER_0005
        else set()
        for table, checks in _checks_declared().items()
    }
    assert found == expected

    await _migrate(db, command.upgrade, "head")
    assert await _snapshot(db) == before
    async with db.read() as conn:
        assert await conn.run_sync(_checks_in_database) == _checks_declared()
        # The copy switched foreign keys off for a moment; they are on again.
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all() == []


@pytest.mark.parametrize(
    ("table", "column", "word"),
    [
        (consultations, "state", "reassigned"),
        (consultation_events, "kind", "unheard_of"),
        (consents, "relationship", "neighbour"),
    ],
)
async def test_a_word_outside_the_vocabulary_is_refused_after_the_upgrade(
    db: Database, table: sa.Table, column: str, word: str
) -> None:
    await _fill(db)
    await _migrate(db, command.downgrade, "0004")
    await _migrate(db, command.upgrade, "head")
    async with db.read() as conn:
        row = dict((await conn.execute(sa.select(table).limit(1))).mappings().one())
    if table is consultation_events:
        del row["id"]
    else:
        row["id"] = "e" * 32
    with pytest.raises(sa.exc.IntegrityError, match="CHECK constraint failed"):
        await db.run_write(lambda conn: conn.execute(table.insert().values({**row, column: word})))
    # The same row with a word of the vocabulary is taken.
    await db.run_write(lambda conn: conn.execute(table.insert().values(row)))
