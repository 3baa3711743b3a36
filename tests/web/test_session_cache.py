"""Sessions taken from memory (``session_cache_seconds``): read once, never stale here.

Every request looks its session up; a process keeps what it read while nothing
was written to the sessions and accounts. What a person would check: signing
out, a deactivated account, a changed password or a changed name take effect
on the very next request, as they did when every request read the database.
The notice to other processes (through Redis) is tested in ``test_cluster.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from records import store
from records.clock import SystemClock
from records.demo import DEMO_PASSWORD
from signaling.workflow.admin import AdminService
from signaling.workflow.base import Context, NoPushes
from web import cli_admin
from web.keys import DB
from web.settings import Settings

from ..conftest import make_settings
from .test_probes import Statements


def session_reads(statements: list[str]) -> int:
    """How many of the statements ``Statements`` saw read the sessions table."""
    return sum(1 for s in statements if s.startswith("SELECT") and "FROM sessions" in s)


async def test_a_session_is_read_once_then_taken_from_memory(
    app: web.Application, login_as: Any
) -> None:
    cardio = await login_as("cardio1")
    # Someone else signing in writes to the sessions: what was kept is read again.
    await login_as("clinic1")
    with Statements(app) as seen:
        for _ in range(3):
            status, body = await cardio.get("/api/session")
            assert status == 200 and body["account"]["username"] == "cardio1"
    assert session_reads(seen) == 1


async def test_the_first_request_after_signing_in_finds_its_session_in_memory(
    app: web.Application, login_as: Any
) -> None:
    with Statements(app) as seen:
        cardio = await login_as("cardio1")
        status, body = await cardio.get("/api/session")
    assert (status, body["account"]["username"]) == (200, "cardio1")
    assert session_reads(seen) == 0


async def test_signing_out_ends_a_cached_session_at_once(login_as: Any) -> None:
    cardio = await login_as("cardio1")
    assert (await cardio.get("/api/session"))[0] == 200
    token = cardio.client.session.cookie_jar.filter_cookies(cardio.client.make_url("/"))
    cookie = {name: morsel.value for name, morsel in token.items()}
    status, _ = await cardio.delete("/api/session")
    assert status == 204
    # The same cookie, kept by someone who copied it before the sign-out.
    resp = await cardio.client.get("/api/session", cookies=cookie)
    assert resp.status == 401


async def test_a_deactivated_account_is_refused_on_its_next_request(login_as: Any) -> None:
    admin = await login_as("admin1")
    cardio = await login_as("cardio1")
    assert (await cardio.get("/api/consultations"))[0] == 200
    status, body = await admin.post(f"/api/admin/accounts/{cardio.account['id']}/deactivate")
    assert status == 200, body
    status, body = await cardio.get("/api/consultations")
    assert status == 401, body


async def test_a_changed_password_ends_the_other_cached_sessions_at_once(login_as: Any) -> None:
    here = await login_as("cardio1")
    elsewhere = await login_as("cardio1")
    assert (await elsewhere.get("/api/session"))[0] == 200
    status, body = await here.post(
        "/api/session/password",
        {"current_password": DEMO_PASSWORD, "new_password": "a-new-passphrase-1"},
    )
    assert status == 200, body
    assert (await elsewhere.get("/api/session"))[0] == 401
    assert (await here.get("/api/session"))[0] == 200


async def test_a_changed_name_shows_on_the_next_request(login_as: Any) -> None:
    admin = await login_as("admin1")
    clinic = await login_as("clinic1")
    assert (await clinic.get("/api/session"))[1]["account"]["display_name"] == "王建国"
    resp = await admin.client.put(
        f"/api/admin/accounts/{clinic.account['id']}",
        json={
            "display_name": "王建国（全科）",
            "role": "clinic_doctor",
            "licence_no": "110420150000009",
            "practice_start": "2015-08-01",
        },
        headers={"X-CSRF-Token": admin.csrf},
    )
    assert resp.status == 200, await resp.text()
    status, body = await clinic.get("/api/session")
    assert (status, body["account"]["display_name"]) == (200, "王建国（全科）")


async def test_a_change_to_the_departments_someone_serves_shows_on_the_next_request(
    app: web.Application, login_as: Any
) -> None:
    """Which consultations a specialist may see follows the departments they
    serve, kept in a table of their own: a write to it alone (as a staff list's
    import makes) ends the cached session too."""
    cardio = await login_as("cardio1")
    served = (await cardio.get("/api/session"))[1]["account"]["department_ids"]
    assert served
    await app[DB].run_write(
        lambda conn: store.update_account(conn, cardio.account["id"], department_ids=[])
    )
    status, body = await cardio.get("/api/session")
    assert (status, body["account"]["department_ids"]) == (200, [])


@pytest.fixture
def settings(tmp_path: Path, demo_database: str, request: pytest.FixtureRequest) -> Settings:
    seconds = getattr(request, "param", 10.0)
    return make_settings(tmp_path, database_url=demo_database, session_cache_seconds=seconds)


@pytest.mark.parametrize("settings", [1.0], indirect=True)
async def test_a_change_no_process_was_told_of_is_seen_within_the_cache_age(
    settings: Settings, login_as: Any
) -> None:
    """``teleconsult admin deactivate`` run from the shell, with no Redis: the
    server is not told, and takes the session from memory for at most
    ``session_cache_seconds`` more."""
    cardio = await login_as("cardio1")
    assert (await cardio.get("/api/session"))[0] == 200
    db = settings.open_database()  # the command's own connection, as in web/cli_admin.py
    try:
        service = AdminService(
            Context(db=db, clock=SystemClock(), notifier=NoPushes()),
            passwords=settings.passwords(),
            cli_user="root",
        )
        await service.deactivate(None, cardio.account["id"])
    finally:
        await db.close()
    deactivated = time.monotonic()
    while (await cardio.get("/api/session"))[0] != 401:
        assert time.monotonic() - deactivated < settings.session_cache_seconds + 5.0
        await asyncio.sleep(0.05)  # a poll: nothing tells this process, by design


@pytest.mark.parametrize("settings", [0.0], indirect=True)
async def test_with_no_cache_every_request_reads_its_session(
    app: web.Application, login_as: Any
) -> None:
    cardio = await login_as("cardio1")
    with Statements(app) as seen:
        for _ in range(3):
            assert (await cardio.get("/api/session"))[0] == 200
    assert session_reads(seen) == 3


async def test_an_admin_command_that_cannot_reach_redis_says_so_and_still_acts(
    tmp_path: Path, demo_database: str, anon: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """The account is deactivated either way; the person at the console learns
    that the running servers were not told, and for how long they may not know."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once it is closed
    shell = make_settings(
        tmp_path, database_url=demo_database, redis_url=f"redis://127.0.0.1:{port}/0"
    )
    args = argparse.Namespace(admin_command="deactivate", username="cardio1")
    assert await asyncio.to_thread(cli_admin.run, shell, args) == 0
    out, err = capfd.readouterr()
    assert "cardio1 deactivated" in out
    assert "the running servers could not be told" in err and "(10 s)" in err
    # Done all the same: the person can no longer sign in.
    resp = await anon.post("/api/session", json={"username": "cardio1", "password": DEMO_PASSWORD})
    assert resp.status == 401
