"""A participant whose socket drops keeps their place for the grace period only.

The grace period is short here (a fifth of a second): the tests wait for what the
others are told, not for the clock.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from web.keys import CALLS
from web.settings import Settings

from ..scenario import Scenario, tab_of
from .calls import connect, join


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, call_grace_seconds=0.2)


async def until_chat_event(sock: Any) -> dict[str, Any]:
    while (msg := await sock.recv("event"))["event"]["kind"] != "chat":
        pass
    return msg


async def test_a_lapsed_place_is_left_and_a_resent_line_is_still_stored_once(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    clinic, cardio, cid = c.clinic, c.specialist, c.id
    a, b = c.sockets["clinic1"], c.sockets["cardio1"]
    await b.send({"type": "chat", "text": "收到", "ref": "line-7"})
    await until_chat_event(a)
    await b.close()
    # The others see the drop, then, once the grace period is over, the leave.
    assert (await a.recv("peer_state"))["connected"] is False
    assert (await a.recv("peer_left")) == {"type": "peer_left", "peer_id": cardio.account["id"]}
    while (msg := await a.recv("event"))["event"]["kind"] != "left":
        pass
    assert msg["event"]["actor_id"] == cardio.account["id"]
    room = app[CALLS].room_of(cid)
    assert room is not None and list(room.members) == [clinic.account["id"]]

    # The page comes back as a newcomer and sends again what it had not seen
    # confirmed: the line is not relayed or stored a second time.
    b2 = await connect(cardio)
    joined = await join(b2, cid, tab=tab_of("cardio1"))
    assert joined["resumed"] is False
    await b2.send({"type": "chat", "text": "收到", "ref": "line-7"})
    await b2.send({"type": "chat", "text": "请继续", "ref": "line-8"})
    relayed = await a.recv("chat")
    assert relayed["ref"] == "line-8"
    assert (await until_chat_event(a))["event"]["data"]["ref"] == "line-8"
    _, data = await clinic.get(f"/api/consultations/{cid}/timeline")
    assert [e["data"]["text"] for e in data["events"] if e["kind"] == "chat"] == ["收到", "请继续"]
