"""Call signaling through the real WebSocket: joining, relay, chat, resume, errors."""

from __future__ import annotations

from typing import Any

import pytest

from web.keys import CALLS, DB

from ..scenario import Scenario, tab_of
from .calls import chat_refused, connect, join

BOTH = ("clinic1", "cardio1")


async def test_two_participants_join_relay_and_go_live(scenario: Scenario) -> None:
    c = await scenario.consultation("accepted")
    clinic, cardio, cid = c.clinic, c.specialist, c.id
    a, b = await connect(clinic), await connect(cardio)
    joined_a = await join(a, cid)
    assert joined_a["type"] == "joined" and joined_a["peers"] == []
    assert joined_a["state"] == "accepted"
    assert joined_a["ice_servers"] == []  # no public STUN unless configured
    joined_b = await join(b, cid, tab="tab-b")
    assert [p["display_name"] for p in joined_b["peers"]] == ["王建国"]
    peer = joined_b["peers"][0]
    assert peer["institution"] == "城关镇卫生院" and peer["role"] == "clinic_doctor"
    assert (await a.recv("peer_joined"))["peer"]["display_name"] == "张伟"
    # Two connected: the consultation is live, and both are told.
    assert (await a.recv("state"))["state"] == "live"
    assert (await b.recv("state"))["state"] == "live"

    await b.send({"type": "offer", "to": clinic.account["id"], "sdp": "v=0\r\n"})
    offer = await a.recv("offer")
    assert offer == {"type": "offer", "from": cardio.account["id"], "sdp": "v=0\r\n"}
    await a.send({"type": "answer", "to": cardio.account["id"], "sdp": "v=0\r\n"})
    assert (await b.recv("answer"))["from"] == clinic.account["id"]
    cand = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"
    await a.send(
        {
            "type": "candidate",
            "to": cardio.account["id"],
            "candidate": cand,
            "sdp_mid": "0",
            "sdp_mline_index": 0,
        }
    )
    got = await b.recv("candidate")
    assert (got["candidate"], got["sdp_mid"], got["sdp_mline_index"]) == (cand, "0", 0)

    await a.send({"type": "media_state", "audio": False, "video": True})
    state = await b.recv("media_state")
    assert (state["from"], state["audio"], state["video"]) == (clinic.account["id"], False, True)

    _, data = await clinic.get(f"/api/consultations/{cid}")
    assert data["consultation"]["state"] == "live"
    kinds = [e["kind"] for e in data["consultation"]["events"]]
    assert kinds[-3:] == ["joined", "joined", "live"]


async def test_chat_reaches_both_and_is_on_the_timeline(scenario: Scenario) -> None:
    c = await scenario.consultation("live", joined=BOTH)
    cardio, cid, (a, b) = c.specialist, c.id, c.sockets.values()
    await a.send({"type": "chat", "text": "患者血压 150/95"})
    for sock in (a, b):
        while (msg := await sock.recv("event"))["event"]["kind"] != "chat":
            pass
        assert msg["event"]["data"]["text"] == "患者血压 150/95"
        assert msg["event"]["actor_name"] == "王建国"
    _, data = await cardio.get(f"/api/consultations/{cid}/timeline")
    chats = [e for e in data["events"] if e["kind"] == "chat"]
    assert [c["data"]["text"] for c in chats] == ["患者血压 150/95"]


async def test_chat_is_relayed_at_once_then_confirmed_on_the_record(scenario: Scenario) -> None:
    c = await scenario.consultation("live", joined=BOTH)
    clinic, cardio, cid, (a, b) = c.clinic, c.specialist, c.id, c.sockets.values()
    await a.send({"type": "chat", "text": " 心电图已上传 ", "ref": "line-1"})
    # The peer reads the line first, then the stored event with the same ref.
    relayed = await b.recv("chat", "event")
    while relayed["type"] == "event" and relayed["event"]["kind"] != "chat":
        relayed = await b.recv("chat", "event")
    assert relayed == {
        "type": "chat",
        "from": clinic.account["id"],
        "ref": "line-1",
        "text": "心电图已上传",
    }
    for sock in (a, b):
        while (msg := await sock.recv("event"))["event"]["kind"] != "chat":
            pass
        assert msg["event"]["data"] == {"text": "心电图已上传", "ref": "line-1"}
        assert msg["event"]["actor_id"] == clinic.account["id"]

    # Sent again (a page resending after a reconnect): neither relayed nor stored twice.
    await a.send({"type": "chat", "text": "心电图已上传", "ref": "line-1"})
    await a.send({"type": "chat", "text": "请看 V1-V4", "ref": "line-2"})
    assert (await b.recv("chat"))["ref"] == "line-2"
    while (msg := await a.recv("event"))["event"]["kind"] != "chat":
        pass
    assert msg["event"]["data"]["ref"] == "line-2"
    _, data = await cardio.get(f"/api/consultations/{cid}/timeline")
    chats = [e["data"]["text"] for e in data["events"] if e["kind"] == "chat"]
    assert chats == ["心电图已上传", "请看 V1-V4"]


async def test_a_chat_line_the_database_refuses_is_reported_to_everyone(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("live", joined=BOTH)
    clinic, cardio, cid, (a, b) = c.clinic, c.specialist, c.id, c.sockets.values()
    async with chat_refused(app[DB]):
        await a.send({"type": "chat", "text": "血氧 91%", "ref": "r-9"})
        assert (await b.recv("chat"))["ref"] == "r-9"
        assert (await b.recv("chat_failed")) == {
            "type": "chat_failed",
            "from": clinic.account["id"],
            "ref": "r-9",
        }
        error = await a.recv("error")
        assert (error["code"], error["ref"]) == ("chat_not_stored", "r-9")
        # Nothing half-written.
        _, data = await cardio.get(f"/api/consultations/{cid}/timeline")
        assert [e for e in data["events"] if e["kind"] == "chat"] == []

    # The same line can be sent again once the database takes it.
    await a.send({"type": "chat", "text": "血氧 91%", "ref": "r-9"})
    while (msg := await b.recv("event"))["event"]["kind"] != "chat":
        pass
    assert msg["event"]["data"] == {"text": "血氧 91%", "ref": "r-9"}
    _, data = await cardio.get(f"/api/consultations/{cid}/timeline")
    assert [e["data"]["text"] for e in data["events"] if e["kind"] == "chat"] == ["血氧 91%"]


async def test_resume_after_a_dropped_socket_replays_what_was_missed(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("live", joined=BOTH)
    cardio, cid, (a, b) = c.specialist, c.id, c.sockets.values()
    joined = c.joins["cardio1"]
    last_seen = max([e["id"] for e in joined["events"]], default=0)
    while True:  # the events b saw before the drop
        msg = await b.recv("event")
        last_seen = msg["event"]["id"]
        if msg["event"]["kind"] == "joined":
            break
    await b.close()
    assert (await a.recv("peer_state")) == {
        "type": "peer_state",
        "peer_id": cardio.account["id"],
        "connected": False,
    }
    await a.send({"type": "chat", "text": "你还在吗?"})
    b2 = await connect(cardio)
    resumed = await join(b2, cid, tab=tab_of("cardio1"), resume_after=last_seen)
    assert resumed["resumed"] is True
    assert [p["display_name"] for p in resumed["peers"]] == ["王建国"]
    assert "你还在吗?" in [e["data"].get("text") for e in resumed["events"]]
    back = await a.recv("peer_joined")
    assert back["resumed"] is True
    room = app[CALLS].room_of(cid)
    assert room is not None and len(room.members) == 2


async def test_errors_keep_the_socket_usable(scenario: Scenario) -> None:
    c = await scenario.consultation("accepted")
    sock = await connect(c.clinic)
    cases: list[tuple[str, str]] = [
        ("not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "chat"}', "missing_field"),
        ('{"type": "chat", "text": 5}', "invalid_field"),
        ('{"type": "chat", "text": "x", "extra": 1}', "unknown_field"),
        ('{"type": "chat", "text": "x", "ref": 7}', "invalid_field"),
        ('{"type": "chat", "text": "x", "ref": "' + "r" * 65 + '"}', "field_too_long"),
        ('{"type": "chat", "text": "' + "长" * 2001 + '"}', "field_too_long"),
        ('{"type": "chat", "text": "' + "x" * 70000 + '"}', "too_large"),
        ('{"type": "offer", "to": "' + "0" * 32 + '", "sdp": "v=0"}', "not_joined"),
    ]
    for raw, code in cases:
        await sock.ws.send_str(raw)
        msg = await sock.recv()
        assert (msg["type"], msg["code"]) == ("error", code), raw
    await sock.ws.send_bytes(b"\x00\x01")
    assert (await sock.recv())["code"] == "bad_message"
    # Still usable: join works after all that.
    assert (await join(sock, c.id))["type"] == "joined"


async def test_relay_only_inside_the_consultation(scenario: Scenario) -> None:
    c = await scenario.consultation("live", joined=BOTH)
    cardio, b = c.specialist, c.sockets["cardio1"]
    # A second consultation between other people.
    c2 = await scenario.consultation("accepted", department="respiratory", joined=("resp1",))
    r = c2.sockets["resp1"]
    # resp1 addresses cardio1 (a member of another call): refused, nothing relayed.
    await r.send({"type": "offer", "to": cardio.account["id"], "sdp": "v=0\r\n"})
    assert (await r.recv("error"))["code"] == "unknown_peer"
    assert "offer" not in [msg["type"] for msg in await b.until_pong()]


@pytest.mark.parametrize("outsider", ["clinic2", "resp1", "cardio2"])
async def test_outsiders_cannot_join(scenario: Scenario, outsider: str) -> None:
    c = await scenario.consultation("accepted")
    sock = await connect(await scenario.user(outsider))
    msg = await join(sock, c.id)
    expected = "not_participant" if outsider == "cardio2" else "not_found"
    assert (msg["type"], msg["code"]) == ("error", expected)


async def test_a_second_window_of_the_same_user_is_refused_without_disturbing_the_call(
    scenario: Scenario,
) -> None:
    c = await scenario.consultation("live", joined=BOTH)
    clinic, cardio, cid, (a, b) = c.clinic, c.specialist, c.id, c.sockets.values()
    second = await connect(clinic)
    msg = await join(second, cid, tab="tab-2")
    assert (msg["type"], msg["code"]) == ("error", "already_in_call")
    # The original window still relays.
    await b.send({"type": "offer", "to": clinic.account["id"], "sdp": "v=0\r\n"})
    assert (await a.recv("offer"))["from"] == cardio.account["id"]


async def test_cross_origin_socket_is_refused(scenario: Scenario) -> None:
    clinic = await scenario.user("clinic1")
    with pytest.raises(Exception) as info:
        await connect(clinic, origin="https://evil.example")
    assert "403" in str(info.value)


async def test_no_call_without_consent(scenario: Scenario) -> None:
    c = await scenario.consultation("accepted", patient="陈阿姨")
    sock = await connect(c.clinic)
    msg = await join(sock, c.id)
    assert (msg["type"], msg["code"]) == ("error", "consent_required")


async def test_the_call_ends_for_everyone(scenario: Scenario) -> None:
    c = await scenario.consultation("live", joined=BOTH)
    clinic, cid, (a, b) = c.clinic, c.id, c.sockets.values()
    await b.send({"type": "end"})
    for sock in (a, b):
        while (await sock.recv("state"))["state"] != "ended":
            pass
    _, data = await clinic.get(f"/api/consultations/{cid}")
    assert data["consultation"]["state"] == "ended"


async def test_showing_a_document_to_all_opens_it_on_the_other_side(scenario: Scenario) -> None:
    from tests.records.samples import pdf
    from tests.web.test_documents import upload

    c = await scenario.consultation("live", joined=BOTH)
    clinic, cid, (a, b) = c.clinic, c.id, c.sockets.values()
    document = await upload(clinic, c.patient_id, pdf(3), consultation_id=cid, title="心电图")
    other = await upload(clinic, await scenario.patient("陈阿姨"), pdf(1), title="other patient")
    await a.send({"type": "doc_show", "document_id": document["id"], "page": 2})
    shown = await b.recv("doc_show")
    assert (shown["document_id"], shown["page"], shown["from"]) == (
        document["id"],
        2,
        clinic.account["id"],
    )
    for sock in (a, b):
        while (msg := await sock.recv("event"))["event"]["kind"] != "document_shown":
            pass
        data = msg["event"]["data"]
        assert (data["document_id"], data["page"], data["title"]) == (document["id"], 2, "心电图")
        assert data["offset_ms"] >= 0
    await b.send({"type": "doc_open", "document_id": document["id"], "page": 1})
    while (await a.recv("event"))["event"]["kind"] != "document_opened":
        pass
    # A document of another patient cannot be shown in this call.
    await a.send({"type": "doc_show", "document_id": other["id"]})
    assert (await a.recv("error"))["code"] == "not_found"
    assert "doc_show" not in [m["type"] for m in await b.until_pong()]
    _, data = await clinic.get(f"/api/consultations/{cid}/timeline")
    kinds = [e["kind"] for e in data["events"]]
    assert "document_shown" in kinds and "document_opened" in kinds
