"""The relay through the real server: who is offered what, and bad answers.

The clinic's leg is a real aiortc sender (another process); the specialist's
receiving side is a real aiortc peer in this process, signaled over ``/ws``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from media import seam
from web.keys import RECORDING
from web.settings import Settings

from ..patience import patient
from ..scenario import Scenario, tab_of
from ..signaling.wire import REC_OFFER
from .calls import connect, join
from .test_recording import leg


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, media_plane="relay", relay_max_bitrate=1_200_000)


async def watch(sock: Any, offer: dict[str, Any]) -> tuple[RTCPeerConnection, asyncio.Queue[Any]]:
    """Answer a ``relay_offer`` over ``sock``; the frames that arrive on it."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    frames: asyncio.Queue[Any] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []  # drained until the connection closes

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def drain() -> None:
            try:
                while True:
                    await frames.put(await track.recv())
            except MediaStreamError:
                return

        tasks.append(asyncio.ensure_future(drain()))

    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await sock.send(
        {"type": "relay_answer", "source": offer["source"], "sdp": pc.localDescription.sdp}
    )
    return pc, frames


async def video_frames(frames: asyncio.Queue[Any], count: int) -> list[seam.EncodedFrame]:
    got: list[seam.EncodedFrame] = []
    async with asyncio.timeout(patient(20)):
        while len(got) < count:
            frame = await frames.get()
            if frame.kind == "video":
                got.append(frame)
    return got


async def test_a_recorded_call_is_relayed_to_the_others_and_closed_when_they_leave(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    a, b = c.sockets["clinic1"], c.sockets["cardio1"]
    for name in ("clinic1", "cardio1"):
        info = c.joins[name]["recording"]
        assert info["relay"] is True and info["max_bitrate"] == 1_200_000
    async with leg(a, "--codec", "vp8", "--seconds", "30"):
        offer = await b.recv("relay_offer")
        assert offer["source"] == c.clinic.account["id"]
        pc, frames = await watch(b, offer)
        try:
            video = await video_frames(frames, 10)
            assert video[0].keyframe and video[0].codec == "vp8"
            fanouts = [x.fanout for x in app[RECORDING].recorder.legs.values()]
            specialist = c.users["cardio1"].account["id"]
            assert [sorted(f.downlinks) for f in fanouts if f] == [[specialist]]
            # The specialist leaves: the relay to them is closed, the leg goes on.
            await b.send({"type": "leave"})
            assert (await a.recv("peer_left"))["peer_id"] == specialist
            assert [f.downlinks for f in fanouts if f] == [{}]
            assert app[RECORDING].is_recording(c.id, c.clinic.account["id"])
        finally:
            await pc.close()


async def test_a_page_that_joins_is_offered_the_legs_already_running(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("accepted", joined=("clinic1",))
    a = c.sockets["clinic1"]
    async with leg(a, "--seconds", "30"):
        b = await connect(await scenario.user("cardio1"))
        assert (await join(b, c.id, tab=tab_of("cardio1")))["type"] == "joined"
        offer = await b.recv("relay_offer")
        assert offer["source"] == c.clinic.account["id"]
        pc, frames = await watch(b, offer)
        try:
            assert (await video_frames(frames, 5))[0].keyframe
        finally:
            await pc.close()


async def test_answers_without_a_relay_or_with_a_broken_sdp_are_refused_and_the_call_goes_on(
    scenario: Scenario,
) -> None:
    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    a, b = c.sockets["clinic1"], c.sockets["cardio1"]
    clinic_id = c.clinic.account["id"]
    # Nothing was offered from the clinic (no leg yet).
    await b.send({"type": "relay_answer", "source": clinic_id, "sdp": REC_OFFER})
    error = await b.recv("error")
    assert error["code"] == "unknown_peer"
    await b.send({"type": "relay_answer", "source": clinic_id, "sdp": "v=0\r\nnot sdp"})
    error = await b.recv("error")
    assert error["code"] == "invalid_field" and "sdp" in error["message"]
    # The call goes on: a chat line still reaches the other side.
    await b.send({"type": "chat", "text": "还在吗", "ref": "r1"})
    assert (await a.recv("chat"))["text"] == "还在吗"


async def test_a_call_without_consent_to_recording_is_not_relayed(scenario: Scenario) -> None:
    c = await scenario.consultation(
        "live", joined=("clinic1", "cardio1"), patient="陈阿姨", consent=("consultation",)
    )
    assert c.joins["clinic1"]["recording"]["relay"] is False
    assert c.joins["cardio1"]["recording"]["relay"] is False
