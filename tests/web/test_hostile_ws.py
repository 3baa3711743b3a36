"""Hostile input on the real /ws: refused with an ``error`` code, never a traceback.

Each case is a frame an attacker (or a broken page) can send. What a user would
check: the sender gets an ``error`` naming the problem, the socket stays open (a
ping still gets its pong), the others in the call notice nothing, nothing is
stored, and the server log has no traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from records.demo import DEMO_PASSWORD
from records.schema import consultation_events, recordings
from records.vocab import EventKind
from signaling.workflow.base import Actor
from web.keys import AUTH, CALLS, CONSULTATIONS, DB

from ..scenario import Scenario
from ..signaling.wire import REC_OFFER
from .calls import Socket, connect, join

LIVE = ("clinic1", "cardio1")
CANDIDATE = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"
NO_ICE = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records at ERROR or above that carry a traceback."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]


async def stays_usable(sock: Socket) -> None:
    """The socket still answers: nothing else was queued, and the ping is answered."""
    assert [m["type"] for m in await sock.until_pong()] == []


async def count(app: web.Application, table: sa.Table) -> int:
    async with app[DB].read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar())


# (raw frame, the error code) -- each sent by a member of a live call.
HOSTILE: list[tuple[str, str]] = [
    # A lone surrogate is not text: it can be neither stored nor relayed.
    ('{"type": "chat", "text": "\\ud800"}', "invalid_field"),
    ('{"type": "chat", "text": "ok", "ref": "\\udfff"}', "invalid_field"),
    ('{"type": "ping", "\\ud800": 1}', "invalid_field"),
    ('{"type": "\\ud800"}', "unknown_type"),
    # Nesting deep enough to exhaust the parser's recursion.
    ('{"type": "chat", "text": "x", "ref": ' + "[" * 20000 + "]" * 20000 + "}", "invalid_json"),
    ('{"type": "ping", "x": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}", "invalid_json"),
    # Integers beyond what the database (or a browser) holds.
    ('{"type": "doc_open", "document_id": "x", "page": ' + str(2**63) + "}", "invalid_field"),
    ('{"type": "doc_show", "document_id": "x", "page": ' + "9" * 4000 + "}", "invalid_field"),
    (
        '{"type": "candidate", "to": "x", "candidate": "", "sdp_mline_index": 1e400}',
        "invalid_field",
    ),
    # Not an offer at all, and candidates that are not candidates.
    ('{"type": "rec_offer", "sdp": "garbage"}', "invalid_field"),
    (
        '{"type": "rec_offer", "sdp": "v=0\\r\\no=- 1 1 IN IP4 0.0.0.0\\r\\ns=-\\r\\nt=0 0\\r\\n"}',
        "invalid_field",
    ),
    (  # shaped like an offer, but aiortc would refuse it (no ICE credentials)
        json.dumps({"type": "rec_offer", "sdp": NO_ICE}),
        "invalid_field",
    ),
    (  # a codec the recorder cannot store as it comes
        json.dumps({"type": "rec_offer", "sdp": REC_OFFER.replace("VP8", "VP9")}),
        "invalid_field",
    ),
    ('{"type": "rec_candidate", "candidate": "garbage"}', "invalid_field"),
    (json.dumps({"type": "rec_candidate", "candidate": CANDIDATE}), "missing_field"),
    (
        '{"type": "rec_candidate", "candidate": "candidate:1 1 udp x 1.2.3.4 5 typ host"}',
        "invalid_field",
    ),
]


@pytest.mark.parametrize(("raw", "code"), HOSTILE, ids=[f"{i}" for i in range(len(HOSTILE))])
async def test_a_hostile_frame_gets_an_error_and_nothing_else_happens(
    scenario: Scenario, app: web.Application, caplog: pytest.LogCaptureFixture, raw: str, code: str
) -> None:
    c = await scenario.consultation("live", joined=LIVE)
    a, b = c.sockets["clinic1"], c.sockets["cardio1"]
    await a.until_pong(), await b.until_pong()
    events, rows = await count(app, consultation_events), await count(app, recordings)

    await a.ws.send_str(raw)
    error = await a.recv()
    assert (error["type"], error["code"]) == ("error", code), error
    await stays_usable(a)
    await stays_usable(b)  # the other participant noticed nothing
    assert (await count(app, consultation_events), await count(app, recordings)) == (events, rows)
    assert tracebacks(caplog) == []


async def test_a_chat_line_with_a_lone_surrogate_leaves_the_fhir_export_working(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    c = await scenario.consultation("live", joined=LIVE)
    a = c.sockets["clinic1"]
    await a.ws.send_str('{"type": "chat", "text": "a\\ud800b", "ref": "r1"}')
    assert (await a.recv("error"))["code"] == "invalid_field"
    # A real line still goes through, and the export answers for everyone.
    await a.send({"type": "chat", "text": "心电图已上传", "ref": "r2"})
    assert (await a.recv("event"))["event"]["data"]["ref"] == "r2"
    for who in ("clinic1", "cardio1"):
        status, bundle = await (await scenario.user(who)).get(f"{c.url}/fhir")
        assert status == 200, bundle
        assert "心电图已上传" in str(bundle)
    assert tracebacks(caplog) == []


async def test_resume_after_beyond_64_bits_is_refused_and_the_join_still_works(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    c = await scenario.consultation("accepted")
    sock = await connect(await scenario.user("clinic1"))
    reply = await join(sock, c.id, resume_after=2**63)
    assert (reply["type"], reply["code"], reply["field"]) == (
        "error",
        "invalid_field",
        "resume_after",
    )
    assert (await join(sock, c.id, resume_after=0))["type"] == "joined"
    assert tracebacks(caplog) == []


async def test_a_rec_candidate_after_a_garbage_offer_is_refused_without_a_row(
    scenario: Scenario, app: web.Application, caplog: pytest.LogCaptureFixture
) -> None:
    c = await scenario.consultation("live", joined=LIVE)
    a = c.sockets["clinic1"]
    await a.send({"type": "rec_offer", "sdp": "garbage"})
    assert (await a.recv("error", "rec_answer"))["type"] == "error"
    await a.send({"type": "rec_candidate", "candidate": CANDIDATE, "sdp_mid": "0"})
    assert (await a.recv("error"))["code"] == "not_recording"
    await stays_usable(a)
    assert await count(app, recordings) == 0
    assert tracebacks(caplog) == []


async def test_an_unexpected_failure_in_a_handler_is_an_error_message_not_a_500(
    scenario: Scenario, app: web.Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await scenario.consultation("live", joined=LIVE)
    a, b = c.sockets["clinic1"], c.sockets["cardio1"]
    calls = app[CALLS]

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the server")

    # A server bug behind one message type (not a case of hostile input).
    monkeypatch.setattr(calls.workflow, "document_event", broken)
    await a.send({"type": "doc_open", "document_id": "0" * 32})
    error = await a.recv("error")
    assert error["code"] == "internal"
    # Neither the socket nor the call went down; the relay still works.
    await stays_usable(a)
    await a.send({"type": "media_state", "audio": False, "video": True})
    assert (await b.recv("media_state"))["audio"] is False


async def test_a_client_gone_before_the_reply_leaves_no_traceback(
    scenario: Scenario, app: web.Application, caplog: pytest.LogCaptureFixture
) -> None:
    c = await scenario.consultation("live", joined=LIVE)
    a, b = c.sockets["clinic1"], c.sockets["cardio1"]
    room = app[CALLS].room_of(c.id)
    assert room is not None
    member = room.members[(await scenario.user("clinic1")).account["id"]]
    # The browser is gone, but the server has not noticed yet: its replies fail.
    await a.ws.close()
    for raw in ('{"type": "ping"}', "not json", '{"type": "leave"}'):
        await app[CALLS].receive(member.actor, member.channel, raw)
    await b.until_pong()  # the other side's socket is still served
    assert tracebacks(caplog) == []


async def test_text_stored_before_the_check_does_not_break_the_fhir_export(
    scenario: Scenario, app: web.Application
) -> None:
    # A line stored by an older server, before the wire refused lone surrogates.
    c = await scenario.consultation("live", joined=LIVE)
    clinic = await scenario.user("clinic1")
    session = await app[AUTH].login("clinic1", DEMO_PASSWORD, None)
    await app[CONSULTATIONS].call_event(
        Actor(account=session.account), c.id, EventKind.CHAT, {"text": "a\ud800b", "ref": "old"}
    )
    status, bundle = await clinic.get(f"{c.url}/fhir")
    assert status == 200, bundle
    texts = [
        p["contentString"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Communication"
        for p in e["resource"]["payload"]
    ]
    assert texts == ["a\ufffdb"]
