"""Shared fixtures: a real app on a real database, demo data, a manual clock.

The database is SQLite unless ``TELECONSULT_TEST_DATABASE`` says ``postgres`` (a
throwaway cluster for the session) or gives a PostgreSQL URL; see tests/pgcluster.py.
The demo database is built once per test session and copied for each test (a file
copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL), so every test
starts from the same known community without paying for argon2 and migrations again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
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

from .hangs import pytest_timeout_set_timer  # noqa: F401 - a hook: pytest finds it here
from .pgcluster import ENV, Cluster, Databases
from .redisserver import RedisServer, redis_or_skip
from .scenario import Scenario, User
from .serverproc import ServerProcess

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
        # argon2's cost is a parameter: 1 MiB hashes in under 1 ms here, against 8 ms
        # for 8 MiB, and a test logs in a few times. Same as ``server_env``.
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "escalation_check_seconds": 3600.0,
        # Keep every packet on loopback: aioice skips 127.0.0.1 unless told, and
        # only loopback candidates may be relayed between the test browsers.
        "recorder_addresses": ("127.0.0.1",),
        "ice_allowed_networks": ("127.0.0.0/8", "::1/128"),
        # The call tests written for the browser mesh run on it (it is still the
        # plane of every call that is not recorded); the relay's tests
        # (tests/e2e/test_relay_browser.py, tests/bench/township.py) ask for it.
        "media_plane": "mesh",
        # No second factor unless a test asks for it (tests/web/test_second_factor.py).
        "totp_roles": (),
        # Record in the test's own process (fast, and tests reach into its legs);
        # the media workers' tests (tests/media/test_workers.py, the browser test
        # tests/e2e/test_media_worker_browser.py) and every server started as a
        # process (``server_env``: the default, one worker per core) use workers.
        "media_workers": 0,
    }
    values.update(overrides)
    return Settings(**values)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(ENV, "").strip() not in ("", "sqlite"):
        # pyproject.toml ignores the GC's warning about an aiosqlite connection a
        # request handler still held when its test server was torn down; these are
        # the same leftover's asyncpg connection, socket and transport. Only in the
        # PostgreSQL pass: the SQLite pass still fails on any other unclosed transport.
        config.addinivalue_line("filterwarnings", "ignore:unclosed <socket.socket:ResourceWarning")
        config.addinivalue_line("filterwarnings", "ignore:unclosed transport:ResourceWarning")
        config.addinivalue_line(
            "filterwarnings", "ignore:unclosed connection <asyncpg:ResourceWarning"
        )


# The media tests and the benchmarks measure frames, CPU and timings: they run one
# at a time, after the rest (``make test``), like the call tests marked ``timing``.
_TIMING_DIRS = ("media", "bench")
# Except these, which measure nothing in time and have no live peer: they run on
# the xdist workers with the other unit tests.
_UNTIMED = {
    # Packets made in the test with timestamps of its own, logs and files
    # written and decoded: nothing depends on the wall clock or a neighbour.
    ("media", "test_packets.py"),
    # aiortc's private names, and our parsers and estimators fed made-up packets
    # beside aiortc's own.
    ("media", "test_seam.py"),
    # Transport-wide feedback packets built and parsed, an SDP answer rewritten.
    ("media", "test_twcc.py"),
    # The recorder's answer rewritten (Opus's in-band FEC, RED and ULPFEC).
    ("media", "test_answer.py"),
    # ULPFEC packets made in the test and decoded.
    ("media", "test_ulpfec.py"),
    # The relay's hold: SDP edited, packets built and parsed, made-up repairs.
    ("media", "test_hold.py"),
    # The township benchmark's summary, on rows made in the test.
    ("bench", "test_township_summary.py"),
    # The township clip's frame stamps: a clip encoded and read back.
    ("bench", "test_township_stamps.py"),
    # The township benchmark's CPU pin: a script started, its /proc read.
    ("bench", "test_township_cpus.py"),
}
DATABASE_TESTS_ONLY = "--database-tests-only"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        DATABASE_TESTS_ONLY,
        action="store_true",
        help="run only the tests that use the suite's database (the `postgres` fixture, "
        "directly or through another fixture); make test-postgres passes it",
    )


def uses_database(item: pytest.Item) -> bool:
    """Whether ``item`` uses the suite's database (the ``postgres`` fixture, directly
    or through another fixture)."""
    return "postgres" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(tests).parts if item.path.is_relative_to(tests) else ()
        if parts and parts[0] in _TIMING_DIRS and parts[:2] not in _UNTIMED:
            item.add_marker(pytest.mark.timing)
    if config.getoption(DATABASE_TESTS_ONLY):
        # The PostgreSQL pass (``make test-postgres``). Every choice of database goes
        # through the ``postgres`` fixture; a test that needs neither it nor a fixture
        # built on it (demo_database, empty_database, settings, app, ...) runs the
        # same whatever TELECONSULT_TEST_DATABASE says: the command-line tests on
        # SQLite files of their own, the parsers, the catalogs. Those ran in the
        # SQLite pass; here they were 331 of 1,362 tests and 38 % of the time.
        keep = [item for item in items if uses_database(item)]
        dropped = [item for item in items if not uses_database(item)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep


# How much of each server process's log a failed test's report shows.
SERVER_LOG_TAIL = 4000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that ran server processes (``ServerProcess`` fixtures, alone or
    in a tuple) shows the end of each one's log: what a CI run prints is all there
    is to go on afterwards."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for name, value in getattr(item, "funcargs", {}).items():
            found = value if isinstance(value, tuple | list) else (value,)
            for proc in (p for p in found if isinstance(p, ServerProcess)):
                try:
                    text = proc.log.read_text(errors="replace")
                except OSError as exc:
                    text = f"(no log: {exc})"
                state = "running" if proc.proc and proc.proc.returncode is None else "ended"
                report.sections.append(
                    (f"{name}: {proc.log.name}, port {proc.port}, {state}", text[-SERVER_LOG_TAIL:])
                )
    return report


@pytest.fixture(scope="session")
def postgres() -> Iterator[Databases | None]:
    """The PostgreSQL server the suite runs on, or None for SQLite (the default)."""
    choice = os.environ.get(ENV, "").strip()
    if choice in ("", "sqlite"):
        yield None
    elif choice == "postgres":
        cluster = Cluster()
        cluster.start()
        try:
            yield Databases(cluster.url())
        finally:
            cluster.stop()
    elif choice.startswith("postgresql"):
        yield Databases(choice)
    else:
        raise pytest.UsageError(f"{ENV}={choice!r}: expected sqlite, postgres or a URL")


@pytest.fixture(scope="session")
def demo_template(
    tmp_path_factory: pytest.TempPathFactory, postgres: Databases | None
) -> Iterator[Path | str]:
    """The migrated demo community, made once: a SQLite file or a template database."""
    folder = tmp_path_factory.mktemp("template")
    settings = make_settings(folder)
    name = postgres.create() if postgres else ""
    url = postgres.url(name) if postgres else settings.effective_database_url

    async def build() -> None:
        db = Database(url)
        await db.upgrade()
        await load_demo(db, hash_password=passwords_for(settings).hash, clock=ManualClock())
        await db.close()

    asyncio.run(build())
    yield name if postgres else folder / DB_NAME
    if postgres:
        postgres.drop(name)


@pytest.fixture
def demo_database(
    tmp_path: Path, demo_template: Path | str, postgres: Databases | None
) -> Iterator[str]:
    """This test's copy of the demo database: the ``database_url`` for its settings.

    On SQLite the copy is the default file in the test's data directory (so the
    URL is empty); on PostgreSQL it is a database of its own, dropped afterwards.
    """
    yield from copy_of(demo_template, tmp_path, postgres)


def copy_of(template: Path | str, tmp_path: Path, postgres: Databases | None) -> Iterator[str]:
    """A copy of ``template`` (a SQLite file or a template database): its
    ``database_url`` (empty: the SQLite file in ``tmp_path``); on PostgreSQL, the
    copy is dropped when the generator is resumed."""
    name, url = new_copy(template, tmp_path, postgres)
    yield url
    if postgres is not None:
        postgres.drop(str(name))


def new_copy(
    template: Path | str, folder: Path, postgres: Databases | None
) -> tuple[Path | str, str]:
    """A copy of ``template``: the SQLite file ``folder/DB_NAME`` (its URL empty, the
    default of settings on ``folder``) or a database of the cluster; what names it,
    and its ``database_url``."""
    if postgres is None:
        shutil.copy(template, folder / DB_NAME)
        return folder / DB_NAME, ""
    name = postgres.create(template=str(template))
    return name, postgres.url(name)


@pytest.fixture
def empty_database(tmp_path: Path, postgres: Databases | None) -> Iterator[str]:
    """The URL of a new, empty database (no schema) on the suite's database."""
    if postgres is None:
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    name = postgres.create()
    yield postgres.url(name)
    postgres.drop(name)


@pytest.fixture
def on_postgres(postgres: Databases | None) -> bool:
    """Whether this run of the suite is on PostgreSQL."""
    return postgres is not None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throwaway redis-server for the session (several web processes share it)."""
    redis_or_skip()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path, demo_database: str) -> Settings:
    return make_settings(tmp_path, database_url=demo_database)


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
    async with logins(server) as login:
        yield login


@asynccontextmanager
async def logins(server: TestServer) -> AsyncIterator[LoginAs]:
    """Logging in to ``server``, each login on a client of its own (closed after)."""
    clients: list[TestClient[Any, Any]] = []

    async def login(username: str, password: str = DEMO_PASSWORD) -> User:
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        clients.append(client)
        resp = await client.post("/api/session", json={"username": username, "password": password})
        assert resp.status == 200, await resp.text()
        data = await resp.json()
        return User(username, client, data["csrf_token"], data["account"])

    try:
        yield login
    finally:
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
