"""Helpers for tests that talk to the signaling WebSocket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType

from ..patience import patient

# Push messages about other consultations can arrive at any time; call tests look
# past them unless they ask for them.
RECV_TIMEOUT = patient(5.0)
# A recording leg's end reaches the pages once the recorder has noticed it (the
# page's DTLS close, or ICE consent lost: 27-39 s after a page went silent),
# finished and probed its file, and the records stored it: the longest chain a
# test waits on for one push, and in the PostgreSQL pass the most starved.
LEG_END_TIMEOUT = patient(20.0)
BACKGROUND = frozenset({"consultation.changed"})


class Socket:
    """A test's end of /ws."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.backlog: list[dict[str, Any]] = []  # read early, put back; read first

    async def _next(self) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        frame = await self.ws.receive()
        if frame.type is not WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {frame.type!r} {frame.data!r}")
        msg: dict[str, Any] = json.loads(frame.data)
        return msg

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self, *types: str, within: float = RECV_TIMEOUT) -> dict[str, Any]:
        """The next message (of one of ``types``, if given; others are skipped),
        within ``within`` seconds.

        Raises:
            TimeoutError: naming what was awaited and what came instead.
        """
        skipped: list[str] = []
        try:
            async with asyncio.timeout(within):
                while True:
                    msg = await self._next()
                    if (types and msg["type"] not in types) or (
                        not types and msg["type"] in BACKGROUND
                    ):
                        skipped.append(msg["type"])
                        continue
                    return msg
        except TimeoutError:
            wanted = " or ".join(types) or "a message"
            raise TimeoutError(
                f"no {wanted} within {within:g} s; came meanwhile: {skipped or 'nothing'}"
            ) from None

    async def until_pong(self) -> list[dict[str, Any]]:
        """Everything queued for us so far: ping, then read up to the pong.

        Messages on one socket are ordered, so whatever the server sent before
        handling the ping is in the returned list.
        """
        await self.send({"type": "ping"})
        seen = []
        while (msg := await self.recv(*()))["type"] != "pong":
            seen.append(msg)
        return seen

    async def drain(self) -> list[dict[str, Any]]:
        """Like ``until_pong``, but keeping every message, background ones too."""
        await self.send({"type": "ping"})
        seen = []
        async with asyncio.timeout(RECV_TIMEOUT):
            while (msg := await self._next())["type"] != "pong":
                seen.append(msg)
        return seen

    def put_back(self, messages: list[dict[str, Any]]) -> None:
        """Have ``recv`` read ``messages`` again, before anything newer."""
        self.backlog[:0] = messages

    async def close(self) -> None:
        await self.ws.close()


async def close_code(ws: ClientWebSocketResponse, within: float = RECV_TIMEOUT) -> int:
    """Read past messages to the server's Close frame; the code it carries.

    That code is what a page's ``close`` event reports. ``ws.close_code`` is not:
    when the server closes its end right after its Close frame (aiohttp does when
    the close comes from another task), the client's reply fails and aiohttp
    overwrites the code with 1006.
    """
    async with asyncio.timeout(within):
        while (frame := await ws.receive()).type is WSMsgType.TEXT:
            pass
    if frame.type is not WSMsgType.CLOSE:
        raise ConnectionError(f"closed without a Close frame: {frame.type!r} {frame.data!r}")
    return int(frame.data)


async def connect(user: Any, origin: str | None = None) -> Socket:
    """Open /ws as ``user`` with this site's Origin and read the hello."""
    if origin is None:
        origin = str(user.client.make_url("/")).rstrip("/")
    ws = await user.client.ws_connect("/ws", headers={"Origin": origin})
    sock = Socket(ws)
    hello = await sock.recv()
    assert hello["type"] == "hello"
    return sock


async def join(sock: Socket, consultation_id: str, tab: str = "tab-1", **extra: Any) -> Any:
    await sock.send({"type": "join", "consultation_id": consultation_id, "tab_id": tab, **extra})
    return await sock.recv("joined", "error")


def refusing(kind: str, message: str) -> dict[str, tuple[str, ...]]:
    """A trigger that aborts the insert of a ``kind`` event, in each database's dialect."""
    name = f"refuse_{kind}"
    return {
        "sqlite": (
            f"CREATE TRIGGER {name} BEFORE INSERT ON consultation_events "
            f"WHEN NEW.kind = '{kind}' BEGIN SELECT RAISE(ABORT, '{message}'); END",
        ),
        "postgresql": (
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$",
            f"CREATE TRIGGER {name} BEFORE INSERT ON consultation_events "
            f"FOR EACH ROW WHEN (NEW.kind = '{kind}') EXECUTE FUNCTION {name}()",
        ),
    }


def allowing(kind: str) -> dict[str, tuple[str, ...]]:
    """Drop what ``refusing(kind, ...)`` made."""
    name = f"refuse_{kind}"
    return {
        "sqlite": (f"DROP TRIGGER {name}",),
        "postgresql": (f"DROP TRIGGER {name} ON consultation_events", f"DROP FUNCTION {name}"),
    }


def _run_all(statements: dict[str, tuple[str, ...]]) -> Any:
    def work(conn: Any) -> None:
        for statement in statements[conn.dialect.name]:
            conn.exec_driver_sql(statement)

    return work


@asynccontextmanager
async def chat_refused(db: Any) -> AsyncIterator[None]:
    """While inside, the database refuses chat rows: a real database failure (a
    trigger aborts the insert), not a stand-in for the store."""
    async with refused(db, "chat", "disk quota"):
        yield


@asynccontextmanager
async def refused(db: Any, kind: str, message: str) -> AsyncIterator[None]:
    """While inside, the database refuses ``kind`` events with ``message``."""
    await db.run_write(_run_all(refusing(kind, message)))
    try:
        yield
    finally:
        await db.run_write(_run_all(allowing(kind)))
