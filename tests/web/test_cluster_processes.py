"""Two real web processes (``python -m web.cli serve``) on one Redis and one database:
the process that owns a call is killed with SIGKILL, and the call goes on.

The clinic doctor's socket is on process A, which gets the room (the first
join); the specialist's is on B, which forwards. A dies without a word: its
leases lapse, B closes the specialist's socket with "going away", the page
comes back (here: the test, as the page would) and rejoins through B, which now
owns the room; the clinic's page, whose process is gone, comes back through B
(a load balancer's next backend). Relay, chat and the timeline carry on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from ..patience import patient
from ..redisserver import RedisServer
from ..scenario import User, over_http
from ..serverproc import ServerProcess
from .calls import close_code

LEASE = 1.0


@pytest.fixture
async def pair(
    tmp_path: Path, demo_database: str, redis_server: RedisServer
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """Processes A and B: same data directory, database and Redis."""
    a, b = (
        ServerProcess.on_free_port(
            tmp_path,
            tmp_path / f"{name}.log",
            database_url=demo_database or f"sqlite+aiosqlite:///{tmp_path / 'teleconsult.sqlite3'}",
            redis_url=redis_server.url,
            redis_lease_seconds=str(LEASE),
            escalation_check_seconds="3600",
            media_plane="mesh",
        )
        for name in ("a", "b")
    )
    await asyncio.gather(a.start(), b.start())
    try:
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop())


class Sock:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self, *types: str, within: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                frame = await self.ws.receive()
                if frame.type is not WSMsgType.TEXT:
                    raise ConnectionError(f"closed: {frame.type!r} {frame.data!r} {frame.extra!r}")
                msg: dict[str, Any] = json.loads(frame.data)
                if msg["type"] in types:
                    return msg


async def open_socket(session: aiohttp.ClientSession, base: str) -> Sock:
    """A socket of ``session``'s user on the process at ``base`` (its cookie works on
    every process: the sessions are in the shared database)."""
    ws = await session.ws_connect(base + "/ws", headers={"Origin": base})
    sock = Sock(ws)
    await sock.recv("hello")
    return sock


async def test_killing_the_process_that_owns_the_call_costs_a_reconnect_not_the_call(
    pair: tuple[ServerProcess, ServerProcess], demo_database: str
) -> None:
    a, b = pair
    async with over_http(a.base) as scenario:
        c = await scenario.consultation("accepted")
        clinic, cardio = c.clinic, c.specialist
        cid = c.id
        sa = await open_socket(clinic.client, a.base)
        await sa.send({"type": "join", "consultation_id": cid, "tab_id": "tab-a"})
        assert (await sa.recv("joined"))["peers"] == []
        sb = await open_socket(cardio.client, b.base)
        await sb.send({"type": "join", "consultation_id": cid, "tab_id": "tab-b"})
        joined = await sb.recv("joined", "error")
        assert joined["type"] == "joined", joined
        assert [p["peer_id"] for p in joined["peers"]] == [clinic.account["id"]]
        await sb.send({"type": "offer", "to": clinic.account["id"], "sdp": "v=0\r\n"})
        assert (await sa.recv("offer"))["from"] == cardio.account["id"]
        await sb.send({"type": "chat", "text": "before", "ref": "r1"})
        assert (await sa.recv("chat"))["text"] == "before"
        while (e := (await sa.recv("event"))["event"])["kind"] != "chat":
            pass
        last = e["id"]  # the page has seen the timeline up to its chat line

        await a.kill()

        # B notices within a lease or two and sends its socket away to come back.
        assert await close_code(sb.ws, within=LEASE * 6) == 1001
        sb = await open_socket(cardio.client, b.base)
        await sb.send(
            {"type": "join", "consultation_id": cid, "tab_id": "tab-b", "resume_after": last}
        )
        again = await sb.recv("joined", "error")
        assert again["type"] == "joined", again
        assert again["state"] == "live"
        # The clinic's page finds its process gone and comes back through B.
        sa2 = await open_socket(clinic.client, b.base)
        await sa2.send({"type": "join", "consultation_id": cid, "tab_id": "tab-a"})
        back = await sa2.recv("joined", "error")
        assert back["type"] == "joined", back
        assert [p["peer_id"] for p in back["peers"]] == [cardio.account["id"]]
        await sa2.send({"type": "answer", "to": cardio.account["id"], "sdp": "v=0\r\n"})
        assert (await sb.recv("answer"))["from"] == clinic.account["id"]
        await sa2.send({"type": "chat", "text": "after", "ref": "r2"})
        assert (await sb.recv("chat"))["text"] == "after"

        # Everything said is on the record once, in order.
        async with asyncio.timeout(patient(10)):
            while True:
                _, data = await clinic_on(b.base, clinic).get(f"/api/consultations/{cid}/timeline")
                chats = [e["data"]["text"] for e in data["events"] if e["kind"] == "chat"]
                if chats == ["before", "after"]:
                    break
                await asyncio.sleep(0.1)  # the stored event follows the relay


def clinic_on(base: str, user: User) -> User:
    """``user`` talking to the process at ``base`` (same cookie)."""
    session: aiohttp.ClientSession = user.client
    return User(user.username, _Based(session, base), user.csrf, user.account)


class _Based:
    """A session's requests sent to another process (absolute URLs)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    def get(self, path: str) -> Any:
        return self.session.get(self.base + path)
