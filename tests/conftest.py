"""Shared fixtures: a real app on a real SQLite file, demo data, a manual clock.

The demo database is built once per test session and copied for each test, so
every test starts from the same known community without paying for argon2 and
migrations again.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from records.db import Database
from records.demo import DEMO_PASSWORD, load_demo
from web.app import create_app, passwords_for
from web.keys import MATCHING
from web.settings import Settings

from .scenario import Scenario, User

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DB_NAME = "teleconsult.sqlite3"


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Test settings: cheap password hashing, no background escalation."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8192,
        "argon2_parallelism": 1,
        "escalation_check_seconds": 3600.0,
        # Keep every packet on loopback: aioice skips 127.0.0.1 unless told, and
        # only loopback candidates may be relayed between the test browsers.
        "recorder_addresses": ("127.0.0.1",),
        "ice_allowed_networks": ("127.0.0.0/8", "::1/128"),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with the demo community, made once."""
    folder = tmp_path_factory.mktemp("template")
    settings = make_settings(folder)

    async def build() -> None:
        db = Database(settings.effective_database_url)
        await db.upgrade()
        await load_demo(db, hash_password=passwords_for(settings).hash, clock=ManualClock())
        await db.close()

    asyncio.run(build())
    return folder / DB_NAME


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path, demo_template: Path) -> Settings:
    shutil.copy(demo_template, tmp_path / DB_NAME)
    return make_settings(tmp_path)


@pytest.fixture
def app(settings: Settings, clock: ManualClock) -> web.Application:
    return create_app(settings, clock=clock)


@pytest.fixture
async def server(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


LoginAs = Callable[[str], Awaitable[User]]


@pytest.fixture
async def login_as(server: TestServer) -> AsyncIterator[LoginAs]:
    """``await login_as("clinic1")``: a new client logged in as that demo user."""
    clients: list[TestClient[Any, Any]] = []

    async def login(username: str, password: str = DEMO_PASSWORD) -> User:
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        clients.append(client)
        resp = await client.post("/api/session", json={"username": username, "password": password})
        assert resp.status == 200, await resp.text()
        data = await resp.json()
        return User(username, client, data["csrf_token"], data["account"])

    yield login
    for client in clients:
        await client.close()


@pytest.fixture
async def anon(server: TestServer) -> AsyncIterator[TestClient[Any, Any]]:
    """A client that is not logged in."""
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
def matching(app: web.Application) -> Any:
    """The matching service of the running app (for escalation with the manual clock)."""
    return app[MATCHING]


@pytest.fixture
def scenario(login_as: LoginAs, app: web.Application, clock: ManualClock) -> Scenario:
    """Builds demo users, patients and consultations in any state through the API."""
    return Scenario(login_as, matching=app[MATCHING], clock=clock)
