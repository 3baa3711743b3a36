"""Two web processes sharing one Redis and one database (``redis_url``).

Both apps run in this test process, each with its own ``Calls``, ``Hub`` and
``Cluster`` (nothing else is shared but Redis and the database, as between two
processes): participants on different apps share one call, pushes reach every
socket of a user wherever it is, and an account's sockets are hung up on both.
Killing a real process is in ``test_cluster_processes.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from records.demo import DEMO_PASSWORD
from web import cli_admin
from web.app import create_app
from web.keys import CALLS, CLUSTER
from web.settings import Settings

from ..conftest import ManualClock, make_settings
from ..patience import PATIENCE, patient
from ..redisserver import RedisServer
from ..scenario import Scenario, User
from .calls import close_code, connect, join


@pytest.fixture
def settings(tmp_path: Path, demo_database: str, redis_server: RedisServer) -> Settings:
    # Sessions stay in memory for an hour: a change made on one process reaches
    # the other's requests by the notice through Redis, never by the cache's age.
    return make_settings(
        tmp_path,
        database_url=demo_database,
        redis_url=redis_server.url,
        session_cache_seconds=3600.0,
    )


@pytest.fixture
async def other(settings: Settings, clock: ManualClock) -> AsyncIterator[TestServer]:
    """A second web process: same settings, same database, same Redis."""
    server = TestServer(create_app(settings, clock=clock))
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def login_on(other: TestServer) -> AsyncIterator[Any]:
    """``await login_on("cardio1")``: a client of the second process, logged in."""
    clients: list[TestClient[Any, Any]] = []

    async def login(username: str) -> User:
        client: TestClient[Any, Any] = TestClient(other)
        await client.start_server()
        clients.append(client)
        resp = await client.post(
            "/api/session", json={"username": username, "password": DEMO_PASSWORD}
        )
        assert resp.status == 200, await resp.text()
        data = await resp.json()
        return User(username, client, data["csrf_token"], data["account"])

    yield login
    for client in clients:
        await client.close()


def app_of(server: TestServer) -> web.Application:
    return server.app


async def test_participants_on_two_processes_share_one_call(
    scenario: Scenario, app: web.Application, other: TestServer, login_on: Any
) -> None:
    c = await scenario.consultation("accepted")
    clinic, cid = c.clinic, c.id
    cardio = await login_on(c.specialist.username)
    a, b = await connect(clinic), await connect(cardio)
    joined_a = await join(a, cid)
    assert joined_a["type"] == "joined" and joined_a["peers"] == []
    joined_b = await join(b, cid, tab="tab-b")
    assert joined_b["type"] == "joined", joined_b
    assert [p["display_name"] for p in joined_b["peers"]] == ["王建国"]
    assert (await a.recv("peer_joined"))["peer"]["display_name"] == "张伟"
    assert (await a.recv("state"))["state"] == "live"
    assert (await b.recv("state"))["state"] == "live"
    # One room, in the process the first joiner came through; the other
    # process holds the socket only.
    assert cid in app[CALLS].rooms and cid not in app_of(other)[CALLS].rooms

    await b.send({"type": "offer", "to": clinic.account["id"], "sdp": "v=0\r\n"})
    assert await a.recv("offer") == {
        "type": "offer",
        "from": cardio.account["id"],
        "sdp": "v=0\r\n",
    }
    await a.send({"type": "answer", "to": cardio.account["id"], "sdp": "v=0\r\n"})
    assert (await b.recv("answer"))["from"] == clinic.account["id"]
    cand = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"
    await b.send(
        {
            "type": "candidate",
            "to": clinic.account["id"],
            "candidate": cand,
            "sdp_mid": "0",
            "sdp_mline_index": 0,
        }
    )
    assert (await a.recv("candidate"))["candidate"] == cand

    # Chat from the far side: relayed, stored once, and the stored event
    # reaches both; a line sent again (same ref) is not stored twice.
    for _ in range(2):
        await b.send({"type": "chat", "text": "心电图已上传", "ref": "far-1"})
    assert (await a.recv("chat"))["text"] == "心电图已上传"
    for sock in (a, b):
        while (msg := await sock.recv("event"))["event"]["kind"] != "chat":
            pass
        assert msg["event"]["data"]["ref"] == "far-1"
    # Errors come back to the far socket, which stays usable.
    await b.send({"type": "offer", "to": "nobody", "sdp": "v=0\r\n"})
    assert (await b.recv("error"))["code"] == "unknown_peer"
    assert [m["type"] for m in await b.until_pong()] == []

    # Leaving from the far side is seen by the near one.
    await b.send({"type": "leave"})
    assert (await a.recv("peer_left"))["peer_id"] == cardio.account["id"]
    _, data = await clinic.get(f"/api/consultations/{cid}/timeline")
    kinds = [e["kind"] for e in data["events"]]
    assert kinds.count("chat") == 1 and kinds[-1] == "left"
    assert app_of(other)[CLUSTER].forwarded_frames >= 6


async def test_a_far_socket_that_drops_keeps_its_place_and_resumes(
    scenario: Scenario, app: web.Application, login_on: Any
) -> None:
    c = await scenario.consultation("accepted")
    clinic, cid = c.clinic, c.id
    cardio = await login_on(c.specialist.username)
    a, b = await connect(clinic), await connect(cardio)
    await join(a, cid)
    await join(b, cid, tab="tab-b")
    await b.close()
    state = await a.recv("peer_state")
    assert (state["peer_id"], state["connected"]) == (cardio.account["id"], False)
    b2 = await connect(cardio)
    again = await join(b2, cid, tab="tab-b")
    assert again["type"] == "joined" and again["resumed"] is True
    assert (await a.recv("peer_joined"))["resumed"] is True


async def test_a_push_reaches_a_users_sockets_on_both_processes(
    scenario: Scenario, login_on: Any
) -> None:
    c = await scenario.consultation("requested")
    here = c.specialist
    there = await login_on(here.username)
    near, far = await connect(here), await connect(there)
    status, _ = await here.post(f"/api/consultations/{c.id}/accept")
    assert status == 200
    for sock in (near, far):
        # The request's own push may still be on its way through Redis when the
        # socket connects (seen once on CI); it comes before the accept's, never after.
        states = []
        while not states or states[-1] != "accepted":
            msg = await sock.recv("consultation.changed")
            assert msg["id"] == c.id
            # Identifiers and states only: the patient's story stays behind the API.
            assert "reason" not in msg and "question" not in msg
            states.append(msg["state"])
        assert states in (["accepted"], ["requested", "accepted"])


async def test_deactivating_an_account_hangs_up_its_sockets_everywhere(
    scenario: Scenario, login_as: Any, login_on: Any
) -> None:
    admin = await login_as("admin1")
    cardio_far = await login_on("cardio1")
    far = await connect(cardio_far)
    assert (await cardio_far.get("/api/consultations"))[0] == 200  # its session, in memory there
    status, _ = await admin.post(f"/api/admin/accounts/{cardio_far.account['id']}/deactivate")
    assert status == 200, _
    frame = await asyncio.wait_for(far.ws.receive(), timeout=patient(2.0))
    assert frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
    # Told before the hang-up (one ordered channel): its requests are refused too.
    status, _ = await cardio_far.get("/api/consultations")
    assert status == 401, _


async def test_logging_out_on_one_process_closes_the_sessions_socket_on_the_other(
    login_as: Any, other: TestServer
) -> None:
    cardio = await login_as("cardio1")
    # The same browser (same cookie) with a socket on the other process.
    origin = str(other.make_url("/")).rstrip("/")
    far = await cardio.client.session.ws_connect(
        str(other.make_url("/ws")), headers={"Origin": origin}
    )
    assert json.loads((await far.receive(timeout=patient(5))).data)["type"] == "hello"
    far_session = str(other.make_url("/api/session"))
    async with cardio.client.session.get(far_session) as resp:
        assert resp.status == 200  # the session, now in the other process's memory
    cookie = {
        name: morsel.value
        for name, morsel in cardio.client.session.cookie_jar.filter_cookies(
            other.make_url("/")
        ).items()
    }
    status, _ = await cardio.delete("/api/session")
    assert status == 204
    frame = await asyncio.wait_for(far.receive(), timeout=patient(2.0))
    assert frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
    # The cookie, kept by someone who copied it, is worth nothing there either.
    async with cardio.client.session.get(far_session, cookies=cookie) as resp:
        assert resp.status == 401


async def test_a_socket_that_left_a_call_here_and_joins_one_held_elsewhere_is_sent_over(
    scenario: Scenario, login_on: Any
) -> None:
    first = await scenario.consultation("accepted")
    second = await scenario.consultation("accepted")
    cardio_far = await login_on(second.specialist.username)
    # The first call is held by this process, the second by the other.
    near = await connect(first.specialist)
    assert (await join(near, first.id))["type"] == "joined"
    held_far = await connect(cardio_far)
    assert (await join(held_far, second.id, tab="t2"))["type"] == "joined"
    # A socket on the other process joins the first call (forwarded here),
    # leaves, and asks for the second: it is sent away to come back.
    clinic_far = await login_on(first.clinic.username)
    sock = await connect(clinic_far)
    assert (await join(sock, first.id, tab="t3"))["type"] == "joined"
    await sock.send({"type": "leave"})
    await sock.send({"type": "join", "consultation_id": second.id, "tab_id": "t3"})
    assert await close_code(sock.ws) == 1001  # going away: the page reconnects
    back = await connect(clinic_far)
    again = await join(back, second.id, tab="t3")
    assert again["type"] == "joined", again
    assert [p["peer_id"] for p in again["peers"]] == [cardio_far.account["id"]]


async def test_an_admin_command_run_from_the_shell_reaches_every_process(
    settings: Settings, login_as: Any, login_on: Any
) -> None:
    """``teleconsult admin deactivate`` writes to the database from a process of
    its own; with Redis it tells the web processes, which keep sessions for an
    hour here, so neither lets the account in again, and each hangs up the
    account's open connection at once (not at its next sweep, a minute on)."""
    near, far = await login_as("cardio1"), await login_on("cardio1")
    for user in (near, far):
        assert (await user.get("/api/session"))[0] == 200  # kept in each process
    sockets = [await connect(near), await connect(far)]
    args = argparse.Namespace(admin_command="deactivate", username="cardio1")
    assert await asyncio.to_thread(cli_admin.run, settings, args) == 0
    for sock in sockets:
        frame = await asyncio.wait_for(sock.ws.receive(), timeout=patient(5.0))
        assert frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
    for user in (near, far):
        # The notice comes through Redis on its own time: nothing in the client to await.
        deadline = time.monotonic() + patient(5.0)
        while (await user.get("/api/session"))[0] != 401:
            assert time.monotonic() < deadline, "the process was not told"
            await asyncio.sleep(0.02)


async def test_a_process_stops_within_a_lease_when_redis_stops_answering(
    tmp_path: Path, demo_database: str
) -> None:
    # A web process stopping (a restart, a deploy) while Redis hangs (a stalled
    # host, a partition): its goodbye is not waited for longer than the lease
    # after which the others take it for gone anyway.
    folder = tmp_path / "redis"
    folder.mkdir()
    redis = RedisServer(folder)
    redis.start()
    assert redis.process is not None
    try:
        settings = make_settings(
            tmp_path / "data",
            database_url=demo_database,
            redis_url=redis.url,
            redis_lease_seconds=1.0,
        )
        server = TestServer(create_app(settings, clock=ManualClock()))
        await server.start_server()
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            # Bounded so that a close that waits on Redis fails here, with an
            # assertion, not at the suite's timeout. (Before, it waited out
            # redis-py's 5 s socket timeout once, plus once a room.)
            await asyncio.wait_for(server.close(), timeout=20 * PATIENCE)
            assert loop.time() - started < 3 * PATIENCE
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
    finally:
        redis.stop()
