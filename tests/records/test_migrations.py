"""The migrations build exactly the schema that records/schema.py declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from records.db import Database
from records.schema import metadata


async def test_migrations_match_the_declared_schema(empty_database: str) -> None:
    db = Database(empty_database)
    await db.upgrade()
    await db.upgrade()  # idempotent
    async with db.read() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    await db.close()
    assert diff == []
