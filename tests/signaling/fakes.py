"""An in-process channel pair for testing ``Calls`` without HTTP or WebSockets.

``FakeChannel`` is the server's end (a ``signaling.call.hub.Channel``): it keeps every
text it is given, decoded as a browser would decode it. ``FakeClient`` is the
test's end: it feeds client messages through ``Calls.receive`` (the same path a
WebSocket frame takes) and reads what came back, in order.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from signaling.call.calls import Calls
from signaling.call.outbound import ServerMessage, encode
from signaling.workflow.base import Actor

from ..patience import patient

RECV_TIMEOUT = patient(5.0)


class FakeChannel:
    """The server's end: records what was sent; refuses to send once closed."""

    def __init__(self) -> None:
        self.texts: list[str] = []  # every text sent, as it would go on the wire
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = False

    async def send(self, message: ServerMessage) -> None:
        await self.send_text(encode(message))

    async def send_text(self, text: str) -> None:
        if self.closed:
            raise ConnectionResetError("fake channel closed")
        self.texts.append(text)
        self.inbox.put_nowait(json.loads(text))


class FakeClient:
    """The test's end of one channel, acting as ``actor``."""

    def __init__(self, calls: Calls, actor: Actor) -> None:
        self.calls = calls
        self.actor = actor
        self.channel = FakeChannel()

    async def send(self, message: dict[str, Any] | str) -> None:
        """Feed one client message (a dict is sent as JSON, a str as it is)."""
        raw = message if isinstance(message, str) else json.dumps(message)
        await self.calls.receive(self.actor, self.channel, raw)

    async def recv(self, *types: str) -> dict[str, Any]:
        """The next message (of one of ``types``, if given; others are skipped)."""
        async with asyncio.timeout(RECV_TIMEOUT):
            while True:
                msg = await self.channel.inbox.get()
                if not types or msg["type"] in types:
                    return msg

    async def event(self, kind: str) -> dict[str, Any]:
        """The next timeline event of ``kind`` (others are skipped)."""
        while True:
            event: dict[str, Any] = (await self.recv("event"))["event"]
            if event["kind"] == kind:
                return event

    def pending(self) -> list[dict[str, Any]]:
        """Everything received and not read yet (without waiting)."""
        out = []
        while not self.channel.inbox.empty():
            out.append(self.channel.inbox.get_nowait())
        return out

    def drop(self) -> None:
        """The connection is gone (as a socket handler's ``finally`` reports it)."""
        self.channel.closed = True
        self.calls.disconnected(self.channel)


def client_pair(calls: Calls, a: Actor, b: Actor) -> tuple[FakeClient, FakeClient]:
    """Two clients of the same ``Calls`` (e.g. the clinic doctor and the specialist)."""
    return FakeClient(calls, a), FakeClient(calls, b)
