"""Property-based tests of the wire protocol (Hypothesis, derandomized).

``parse`` alone: whatever the frame, it returns a message or raises
``ProtocolError`` with a code of the vocabulary -- nothing else.

``Calls`` with fake channels, in a live call, with a second unrelated call beside
it: every frame gets either its normal effect or an ``error`` with a code (the
very one ``parse`` names when the shape is wrong); everything sent back is
UTF-8 text a socket can carry; a ping after it still gets its pong; the other
call hears nothing; and the server log holds no traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from records.demo import DEMO_PASSWORD
from records.vocab import ErrorCode
from signaling import jsonlimits
from signaling.call import messages as m
from signaling.call.calls import Calls
from signaling.call.ice import IceConfig
from signaling.workflow.base import Actor
from web.keys import AUTH, CONSULTATIONS, DIRECTORY

from ..scenario import Scenario
from .fakes import FakeClient
from .wire import SETTINGS, field_names, frames, good_values, on_loop

CODES = {c.value for c in ErrorCode}
PEERS = ["0" * 32]  # stands in for real ids in the pure parse tests


def test_the_strategies_know_every_field() -> None:
    assert field_names() <= set(good_values(PEERS))


@settings(SETTINGS, max_examples=1500)
@given(frames(PEERS))
def test_parse_returns_a_message_or_a_protocol_error(raw: str) -> None:
    try:
        msg = m.parse(raw)
    except m.ProtocolError as exc:
        assert exc.code in CODES
        # The error goes back on the wire: it must be text a socket can carry.
        json.dumps({"message": exc.message, "field": exc.field}).encode("utf-8")
        if exc.field is not None:
            exc.field.encode("utf-8")
        exc.message.encode("utf-8")
    else:
        assert type(msg) in m.TYPES.values()


@pytest.fixture
def started(app: web.Application, server: TestServer) -> web.Application:
    return app


@pytest.fixture
async def calls(started: web.Application) -> AsyncIterator[Calls]:
    calls = Calls(
        workflow=started[CONSULTATIONS],
        directory=started[DIRECTORY],
        ice=IceConfig(allowed_networks=("127.0.0.0/8",)),
        grace_seconds=30.0,
    )
    yield calls
    await calls.close()


async def actor(app: web.Application, username: str) -> Actor:
    session = await app[AUTH].login(username, DEMO_PASSWORD, None)
    return Actor(account=session.account)


async def joined(client: FakeClient, cid: str, tab: str) -> None:
    await client.send({"type": "join", "consultation_id": cid, "tab_id": tab})
    assert (await client.recv("joined", "error"))["type"] == "joined"


def sent(client: FakeClient) -> list[dict[str, Any]]:
    """What reached the client since last asked, checked to be sendable text."""
    for text in client.channel.texts:
        text.encode("utf-8")  # a lone surrogate here could never reach a browser
    client.channel.texts.clear()
    return client.pending()


async def test_every_frame_gets_its_effect_or_an_error_and_the_call_goes_on(
    started: web.Application,
    calls: Calls,
    scenario: Scenario,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = FakeClient(calls, await actor(started, "clinic1"))
    b = FakeClient(calls, await actor(started, "cardio1"))
    r = FakeClient(calls, await actor(started, "resp1"))
    cid = (await scenario.consultation("accepted")).id
    cid2 = (await scenario.consultation("accepted", department="respiratory")).id
    await joined(a, cid, "tab-a")
    await joined(b, cid, "tab-b")
    await joined(r, cid2, "tab-r")
    # Wait for the call to be live (both told) before the fuzzing starts.
    await a.recv("state"), await b.recv("state")
    await asyncio.gather(*calls._tasks, return_exceptions=True)
    sent(a), sent(b), sent(r)
    loop = asyncio.get_running_loop()
    peers = [a.actor.id, b.actor.id, r.actor.id, cid, cid2]
    seen: dict[str, int] = {}

    async def one(raw: str) -> list[dict[str, Any]]:
        await a.send(raw)
        await a.send({"type": "ping"})
        replies = sent(a)
        # Let the spawned work (a chat line being stored) finish before the next frame.
        await asyncio.gather(*calls._tasks, return_exceptions=True)
        return replies + sent(a)

    @settings(SETTINGS, max_examples=600)
    @given(frames(peers))
    def example(raw: str) -> None:
        try:
            expected: m.ClientMessage | m.ProtocolError = m.parse(raw)
        except m.ProtocolError as exc:
            expected = exc
        # The two that end a's place (or the call) are exercised by their own tests.
        assume(not isinstance(expected, m.Leave | m.End))
        replies = on_loop(loop, one(raw))
        types = [x["type"] for x in replies]
        assert "pong" in types, (raw, replies)  # still usable
        errors = [x for x in replies if x["type"] == "error"]
        for error in errors:
            assert error["code"] in CODES and error["message"], error
        if isinstance(expected, m.ProtocolError):
            assert [(e["code"], e["field"]) for e in errors] == [(expected.code, expected.field)]
        elif isinstance(expected, m.Ping):
            assert types.count("pong") == 2
        seen[type(expected).__name__] = seen.get(type(expected).__name__, 0) + 1

    await asyncio.to_thread(example)

    # Every kind of outcome came up, well-formed messages of many types among them.
    assert seen.get("ProtocolError", 0) > 50 and len(seen) >= 8, seen
    # The other call heard nothing of it; b only what a's valid messages meant for it.
    assert sent(r) == []
    assert {x["type"] for x in sent(b)} <= {
        "offer",
        "answer",
        "candidate",
        "chat",
        "event",
        "media_state",
        "doc_show",
        "state",
        "recording",
    }
    assert [
        x.getMessage() for x in caplog.records if x.levelno >= logging.ERROR and x.exc_info
    ] == []
    # And the call still works both ways.
    await b.send({"type": "media_state", "audio": False, "video": False})
    assert (await a.recv("media_state"))["audio"] is False


@settings(SETTINGS, max_examples=300)
@given(
    st.recursive(
        st.integers() | st.text(max_size=3),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
        max_leaves=30,
    )
)
def test_depth_measures_what_the_parser_nests(value: Any) -> None:
    text = json.dumps(value)

    def nesting(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max((nesting(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((nesting(x) for x in v.values()), default=0)
        return 0

    assert jsonlimits.depth(text) == nesting(value)
    for limit in (0, 1, 2, 5):
        assert jsonlimits.deeper_than(text, limit) == (nesting(value) > limit)
