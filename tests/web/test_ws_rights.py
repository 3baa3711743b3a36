"""The call follows the consultation's rights: who loses their place leaves the call.

A specialist taken off a case by a reassignment used to stay in the room: they
kept receiving the joins, the state and the chat, and their offers were relayed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from web.keys import CALLS

from ..scenario import Scenario
from .calls import connect, join


async def test_a_specialist_reassigned_away_is_dropped_from_the_call(
    scenario: Scenario, app: web.Application
) -> None:
    c = await scenario.consultation("accepted", joined=("cardio1",))
    old = c.sockets["cardio1"]
    old_id = (await scenario.user("cardio1")).account["id"]
    await old.until_pong()
    coord = await scenario.user("coord1")
    new_id = (await scenario.user("cardio2")).account["id"]

    status, data = await coord.post(f"{c.url}/assign", {"specialist_id": new_id})
    assert status == 200, data
    # Told at once (before the coordinator's answer), with a code the page knows.
    error = await old.recv("error")
    assert error["code"] == "not_participant"
    room = app[CALLS].room_of(c.id)
    assert room is None or old_id not in room.members

    # The clinic and the new specialist meet; the old one hears nothing of it.
    clinic = await connect(await scenario.user("clinic1"))
    joined = await join(clinic, c.id, tab="tab-clinic1")
    assert joined["type"] == "joined" and joined["peers"] == []
    new = await connect(await scenario.user("cardio2"))
    assert (await join(new, c.id, tab="tab-cardio2"))["type"] == "joined"
    assert (await clinic.recv("state"))["state"] == "live"
    await clinic.send({"type": "chat", "text": "请看心电图", "ref": "r1"})
    assert (await new.recv("chat"))["text"] == "请看心电图"
    for sock in (clinic, new):  # the line is stored (on the record) for both
        while (await sock.recv("event"))["event"]["kind"] != "chat":
            pass
    await new.until_pong(), await clinic.until_pong()

    seen: list[Any] = await old.until_pong()
    assert [m["type"] for m in seen] == []
    # What they send is no longer relayed, and they cannot come back.
    await old.send({"type": "offer", "to": joined["peer_id"], "sdp": "v=0\r\n"})
    assert (await old.recv("error"))["code"] == "not_joined"
    assert (await join(old, c.id, tab="tab-cardio1"))["code"] == "not_participant"
    assert [m["type"] for m in await clinic.until_pong()] == []


async def test_a_request_cancelled_while_someone_waits_in_its_call_closes_the_room(
    scenario: Scenario, app: web.Application
) -> None:
    c = await scenario.consultation("accepted", joined=("cardio1",))
    waiting = c.sockets["cardio1"]
    await waiting.until_pong()
    clinic = await scenario.user("clinic1")
    status, data = await clinic.post(f"{c.url}/cancel", {"reason": "患者已自行转院"})
    assert status == 200, data
    assert (await waiting.recv("state"))["state"] == "cancelled"
    assert app[CALLS].room_of(c.id) is None
    await waiting.send({"type": "chat", "text": "还在吗", "ref": "r1"})
    assert (await waiting.recv("error"))["code"] == "not_joined"
