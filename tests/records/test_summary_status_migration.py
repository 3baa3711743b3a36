"""Migration 0012 (summary statuses, immunizations, procedures) down and up again.

Down to 0009 the status columns and the two new tables go, and so do the rows the
older code would show wrongly: entries their source withdrew (it would show them
as facts) and diagnoses coded other than in ICD-10 (it would read the code as
ICD-10); every other row stays. Up again the columns are back, empty for the rows that
stayed (the older importer took everything as a fact).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from records.db import Database
from records.schema import allergies, conditions, immunizations, patients

from .test_vocab_migration import AT, _fill, _migrate


async def test_down_to_0009_and_up_again(db: Database) -> None:
    await _fill(db)

    def add(conn: sa.Connection) -> None:
        pid = conn.execute(sa.select(patients.c.id).limit(1)).scalar_one()
        common = {"patient_id": pid, "recorded_at": AT}
        conn.execute(
            conditions.insert().values(
                id="c" * 32, code="I10", display="高血压", verification_status="confirmed", **common
            )
        )
        conn.execute(
            conditions.insert().values(
                id="d" * 32,
                code="http://snomed.info/sct|1201005",
                display="Benign essential hypertension",
                **common,
            )
        )
        conn.execute(
            allergies.insert().values(
                id="a" * 32,
                display="青霉素",
                clinical_status="active",
                verification_status="refuted",
                **common,
            )
        )
        conn.execute(
            allergies.insert().values(
                id="b" * 32, display="磺胺", verification_status="confirmed", **common
            )
        )
        conn.execute(
            immunizations.insert().values(
                id="i" * 32, display="Influenza", status="completed", **common
            )
        )

    await db.run_write(add)
    await _migrate(db, command.downgrade, "0011")
    async with db.read() as conn:
        names = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
        assert {"immunizations", "procedures"}.isdisjoint(names)
        codes = (await conn.execute(sa.text("SELECT code FROM conditions"))).scalars().all()
        assert codes == ["I10"]
        kept = (await conn.execute(sa.text("SELECT display FROM allergies"))).scalars().all()
        assert kept == ["磺胺"]  # the refuted penicillin allergy went

    await _migrate(db, command.upgrade, "head")
    async with db.read() as conn:
        row = (await conn.execute(sa.select(allergies))).mappings().one()
        assert (row["display"], row["verification_status"]) == ("磺胺", None)
        assert (
            await conn.execute(sa.select(sa.func.count()).select_from(immunizations))
        ).scalar() == 0
