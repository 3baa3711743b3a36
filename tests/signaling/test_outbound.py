"""Server-to-client messages: one frozen dataclass per type, the same JSON as before."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from records.models import Event
from signaling.call import outbound as o
from signaling.call.messages import CLIENT_MESSAGE_TYPES


def wire(message: dict[str, Any]) -> str:
    """How the dict literals the server used to send were encoded."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


PEER = o.PeerInfo(
    peer_id="p1",
    display_name="王建国",
    title=None,
    role="clinic_doctor",
    institution="城关镇卫生院",
    audio=True,
    video=False,
    connected=True,
)
PEER_DICT = {
    "peer_id": "p1",
    "display_name": "王建国",
    "title": None,
    "role": "clinic_doctor",
    "institution": "城关镇卫生院",
    "audio": True,
    "video": False,
    "connected": True,
}
EVENT = Event(
    id=7,
    consultation_id="c1",
    at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
    kind="chat",
    actor_id="p1",
    data={"text": "血压 150/95", "ref": "r-1"},
)
EVENT_DICT = {
    "id": 7,
    "at": "2026-11-23T08:00:00+00:00",
    "kind": "chat",
    "actor_id": "p1",
    "actor_name": "王建国",
    "data": {"text": "血压 150/95", "ref": "r-1"},
}

# Each message and the dict literal it replaced, byte for byte.
CASES: list[tuple[o.ServerMessage, dict[str, Any]]] = [
    (o.Hello(account_id="a1"), {"type": "hello", "account_id": "a1"}),
    (o.Pong(), {"type": "pong"}),
    (
        o.Error(code="invalid_json", message="message is not valid JSON"),
        {
            "type": "error",
            "code": "invalid_json",
            "message": "message is not valid JSON",
            "field": None,
        },
    ),
    (
        o.ChatNotStored(ref="r-9"),
        {
            "type": "error",
            "code": "chat_not_stored",
            "message": "the message could not be stored",
            "ref": "r-9",
        },
    ),
    (o.RelayedOffer(from_="p1", sdp="v=0\r\n"), {"type": "offer", "from": "p1", "sdp": "v=0\r\n"}),
    (o.RelayedAnswer(from_="p1", sdp="v=0"), {"type": "answer", "from": "p1", "sdp": "v=0"}),
    (
        o.RelayedCandidate(from_="p1", candidate="c", sdp_mid=None, sdp_mline_index=0),
        {
            "type": "candidate",
            "from": "p1",
            "candidate": "c",
            "sdp_mid": None,
            "sdp_mline_index": 0,
        },
    ),
    (
        o.RelayedChat(from_="p1", ref="r", text="你好"),
        {"type": "chat", "from": "p1", "ref": "r", "text": "你好"},
    ),
    (o.ChatFailed(from_="p1", ref="r"), {"type": "chat_failed", "from": "p1", "ref": "r"}),
    (
        o.RelayedMediaState(from_="p1", audio=False, video=True),
        {"type": "media_state", "from": "p1", "audio": False, "video": True},
    ),
    (
        o.RelayedDocShow(from_="p1", document_id="d1", page=None),
        {"type": "doc_show", "from": "p1", "document_id": "d1", "page": None},
    ),
    (
        o.TimelineEvent(event=o.EventInfo.of(EVENT, {"p1": "王建国"})),
        {"type": "event", "event": EVENT_DICT},
    ),
    (o.StateChanged(state="live"), {"type": "state", "state": "live"}),
    (o.StateChanged(state="ended", by="p1"), {"type": "state", "state": "ended", "by": "p1"}),
    (
        o.PeerState(peer_id="p1", connected=False),
        {"type": "peer_state", "peer_id": "p1", "connected": False},
    ),
    (
        o.RecordingChanged(peer_id="p1", state="recording"),
        {"type": "recording", "peer_id": "p1", "state": "recording"},
    ),
    (o.RecAnswer(sdp="v=0"), {"type": "rec_answer", "sdp": "v=0"}),
    (
        o.RelayOffer(source="p1", sdp="v=0"),
        {"type": "relay_offer", "source": "p1", "sdp": "v=0"},
    ),
    (
        o.PeerJoined(peer=PEER, resumed=True),
        {"type": "peer_joined", "peer": PEER_DICT, "resumed": True},
    ),
    (o.PeerLeft(peer_id="p1"), {"type": "peer_left", "peer_id": "p1"}),
    (
        o.Joined(
            consultation_id="c1",
            peer_id="p2",
            resumed=False,
            peers=(PEER,),
            ice_servers=(
                o.IceServer(urls=("stun:stun.example:3478",)),
                o.IceServer(urls=("turn:turn.example:443",), username="u", credential="k"),
            ),
            ice_transport_policy="all",
            state="accepted",
            recording=o.RecordingInfo(
                available=True, allowed=True, max_bitrate=500_000, recording=("p1",)
            ),
            events=(o.EventInfo.of(EVENT, {"p1": "王建国"}),),
        ),
        {
            "type": "joined",
            "consultation_id": "c1",
            "peer_id": "p2",
            "resumed": False,
            "peers": [PEER_DICT],
            "ice_servers": [
                {"urls": ["stun:stun.example:3478"]},
                {"urls": ["turn:turn.example:443"], "username": "u", "credential": "k"},
            ],
            "ice_transport_policy": "all",
            "state": "accepted",
            "recording": {
                "available": True,
                "allowed": True,
                "max_bitrate": 500000,
                "recording": ["p1"],
            },
            "events": [EVENT_DICT],
        },
    ),
    (
        o.ConsultationChanged(id="c1", state="accepted", escalated=False, department_id="d1"),
        {
            "type": "consultation.changed",
            "id": "c1",
            "state": "accepted",
            "escalated": False,
            "department_id": "d1",
        },
    ),
    (
        o.ConsultationOverdue(id="c1", state="ended", department_id="d1", deadline="complete"),
        {
            "type": "consultation.overdue",
            "id": "c1",
            "state": "ended",
            "department_id": "d1",
            "deadline": "complete",
        },
    ),
]


@pytest.mark.parametrize(("message", "literal"), CASES, ids=lambda x: type(x).__name__)
def test_the_json_is_what_the_dict_literal_was(message: o.ServerMessage, literal: Any) -> None:
    assert o.encode(message) == wire(literal)
    assert o.to_wire(message) == literal


def test_without_a_recorder_the_recording_info_has_no_bitrate() -> None:
    joined = o.Joined(
        consultation_id="c1",
        peer_id="p2",
        resumed=False,
        peers=(),
        ice_servers=(),
        ice_transport_policy="relay",
        state="live",
        recording=o.RecordingInfo(available=False, allowed=False),
        events=(),
    )
    assert o.to_wire(joined)["recording"] == {"available": False, "allowed": False, "recording": []}


def test_every_server_message_type_is_covered_and_listed() -> None:
    assert {type(message) for message, _ in CASES} == set(o.SERVER_MESSAGES)
    assert o.SERVER_MESSAGE_TYPES == {
        "hello",
        "pong",
        "error",
        "joined",
        "peer_joined",
        "peer_left",
        "peer_state",
        "offer",
        "answer",
        "candidate",
        "chat",
        "chat_failed",
        "media_state",
        "doc_show",
        "event",
        "state",
        "recording",
        "rec_answer",
        "relay_offer",
        "consultation.changed",
        "consultation.overdue",
    }
    assert "join" in CLIENT_MESSAGE_TYPES and "rec_offer" in CLIENT_MESSAGE_TYPES


@pytest.mark.parametrize("cls", o.SERVER_MESSAGES, ids=lambda c: c.__name__)
def test_messages_are_frozen_and_keyword_only(cls: type[Any]) -> None:
    params = dataclasses.fields(cls)
    assert cls.__dataclass_params__.frozen
    assert all(f.kw_only for f in params)


def test_an_untyped_object_is_not_sent() -> None:
    with pytest.raises(TypeError):
        o.encode(o.TimelineEvent(event=object()))  # type: ignore[arg-type]
