"""Property-based test of the wire protocol through the real /ws (Hypothesis).

Hostile and well-formed frames from one participant of a live call, over a real
WebSocket: each gets its effect or an ``error`` with a code, the socket stays
open (a ping after it gets its pong, and every frame back is JSON text), an
unrelated call beside it hears nothing, and the server log holds no traceback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given, settings

from records.vocab import ErrorCode
from signaling.call import messages as m

from ..scenario import Scenario
from ..signaling.wire import SETTINGS, frames, on_loop
from .calls import Socket

CODES = {c.value for c in ErrorCode}


async def exchange(sock: Socket, raw: str, pongs: int) -> list[dict[str, Any]]:
    """Send ``raw``, then a ping; everything that came back up to the last of
    ``pongs`` pongs (two when ``raw`` is itself a ping)."""
    await sock.ws.send_str(raw)
    await sock.send({"type": "ping"})
    seen: list[dict[str, Any]] = []
    while pongs:
        msg = await sock.recv()
        pongs -= msg["type"] == "pong"
        seen.append(msg)
    return seen


async def test_hostile_frames_over_the_real_socket_leave_everything_working(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    # No consent to recording: a well-formed recording offer is refused by the rule,
    # and no recorder leg (real media, its own tests) runs under the fuzzing.
    c = await scenario.consultation(
        "live", patient="陈阿姨", consent=("consultation",), joined=("clinic1", "cardio1")
    )
    other = await scenario.consultation("accepted", department="respiratory", joined=("resp1",))
    a, b, r = c.sockets["clinic1"], c.sockets["cardio1"], other.sockets["resp1"]
    for sock in (a, b, r):
        await sock.until_pong()
    peers = [c.joins["clinic1"]["peer_id"], c.joins["cardio1"]["peer_id"], c.id, other.id]
    loop = asyncio.get_running_loop()

    @settings(SETTINGS, max_examples=400)
    @given(frames(peers))
    def example(raw: str) -> None:
        try:
            expected: m.ClientMessage | m.ProtocolError = m.parse(raw)
        except m.ProtocolError as exc:
            expected = exc
        if isinstance(expected, m.Leave | m.End):
            return  # they end a's place or the call: tests of their own
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            return  # a text frame is UTF-8: no client can send this (as JSON escapes, yes)
        replies = on_loop(loop, exchange(a, raw, 2 if isinstance(expected, m.Ping) else 1))
        errors = [x for x in replies if x["type"] == "error"]
        assert all(e["code"] in CODES for e in errors), errors
        if isinstance(expected, m.ProtocolError):
            assert [e["code"] for e in errors] == [expected.code], (raw, replies)

    await asyncio.to_thread(example)

    assert await r.until_pong() == []  # the other call heard nothing
    await b.send({"type": "chat", "text": "还在", "ref": "after"})
    assert (await a.recv("chat"))["text"] == "还在"
    assert [
        x.getMessage() for x in caplog.records if x.levelno >= logging.ERROR and x.exc_info
    ] == []
