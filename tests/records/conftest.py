"""What the records tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from records.db import Database


@pytest.fixture
async def db(empty_database: str) -> AsyncIterator[Database]:
    """An empty database of this test's kind, migrated to the newest schema."""
    database = Database(empty_database)
    await database.upgrade()
    yield database
    await database.close()
