"""The pre-call network probe: an aiortc peer in the test stands in for the page.

It offers one unordered, never retransmitted data channel, sends numbered,
timestamped packets, and reads the acknowledgements: the sequence number and
send time come back, with what the probe has received so far. Everything on
127.0.0.1 (``restrict_host_addresses``).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media import twcc
from media.probe import ACK, HEADER, ProbeBusy, Prober, ProbeRefused, offer_problem

PACKETS = 40
SIZE = 1000


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    p = Prober(host_addresses=("127.0.0.1",), max_probes=1, lifetime=20.0)
    yield p
    await p.close()


async def page_offer() -> tuple[RTCPeerConnection, object, str]:
    pc = RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("probe", ordered=False, maxRetransmits=0)
    await pc.setLocalDescription(await pc.createOffer())
    return pc, channel, pc.localDescription.sdp


async def test_every_packet_is_acknowledged_with_the_servers_counts(prober: Prober) -> None:
    pc, channel, offer = await page_offer()
    acks: list[tuple[int, float, int, int]] = []
    done = asyncio.Event()

    @channel.on("message")  # type: ignore[attr-defined, untyped-decorator]
    def on_message(message: bytes) -> None:
        acks.append(ACK.unpack(message))
        if len(acks) == PACKETS:
            done.set()

    opened = asyncio.Event()
    channel.on("open", opened.set)  # type: ignore[attr-defined]
    try:
        answer = await prober.answer(offer)
        assert "a=candidate:" in answer and "127.0.0.1" in answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        async with asyncio.timeout(10):
            await opened.wait()
        for seq in range(PACKETS):
            channel.send(HEADER.pack(seq, 1000.5 + seq) + bytes(SIZE - HEADER.size))  # type: ignore[attr-defined]
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        await pc.close()
    assert sorted(a[0] for a in acks) == list(range(PACKETS))
    assert all(sent == 1000.5 + seq for seq, sent, _, _ in acks)
    assert max(a[2] for a in acks) == PACKETS
    assert max(a[3] for a in acks) == PACKETS * SIZE


async def test_a_second_probe_waits_and_a_probe_ends_by_itself() -> None:
    prober = Prober(host_addresses=("127.0.0.1",), max_probes=1, lifetime=0.5)
    first, _, offer = await page_offer()
    second, _, offer2 = await page_offer()
    try:
        await prober.answer(offer)
        with pytest.raises(ProbeBusy):
            await prober.answer(offer2)
        # The probe's lifetime passes: here time itself is the condition.
        await asyncio.sleep(1.0)
        assert not prober.peers
        await prober.answer(offer2)
    finally:
        await prober.close()
        await first.close()
        await second.close()
    assert not prober.peers


async def test_what_is_not_a_probe_offer_is_refused(prober: Prober) -> None:
    assert offer_problem("hello") is not None
    pc = RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        with pytest.raises(ProbeRefused, match="m=application"):
            await prober.answer(pc.localDescription.sdp)
    finally:
        await pc.close()
    assert not prober.peers
    assert HEADER.size == struct.calcsize("!Id")


def with_transport_cc_offered(sdp: str) -> str:
    """``sdp`` (aiortc's offer) with transport-wide sequence numbers offered for
    its video, as Chromium offers them."""
    out = []
    in_video = False
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        out.append(line)
        if in_video and line.startswith("a=mid:"):
            out.append(f"a=extmap:5 {twcc.URI}")
        if in_video and line.startswith("a=rtpmap:") and "VP8" in line:
            out.append(f"a=rtcp-fb:{line.split(':')[1].split()[0]} transport-cc")
    return "\r\n".join(out)


async def answered_video(prober: Prober, edit: Callable[[str], str]) -> tuple[str, list[str]]:
    """The probe's answer to a page's offer of a data channel and a video
    sender (its SDP made by ``edit``), and the answer's video section's lines."""
    pc = RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))
    pc.createDataChannel("probe", ordered=False, maxRetransmits=0)
    pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = edit(pc.localDescription.sdp)
    assert offer_problem(offer) is None
    try:
        answer = await prober.answer(offer)
    finally:
        await pc.close()
    return answer, answer.split("m=video", 1)[1].split("\r\nm=", 1)[0].split("\r\n")


async def test_the_video_of_a_probe_is_answered_with_transport_wide_feedback_and_no_nack(
    prober: Prober,
) -> None:
    # The page sends video to learn what the path carries and loses: its own
    # congestion controller follows transport-wide feedback (as on the
    # recording leg), and without NACK nothing is resent, so the probe's
    # receiver reports count every packet lost on the way.
    answer, video = await answered_video(prober, with_transport_cc_offered)
    assert f"a=extmap:5 {twcc.URI}" in video
    assert any(line.endswith(" transport-cc") for line in video)
    assert not [line for line in video if line.startswith("a=rtcp-fb:") and line.endswith(" nack")]
    assert not [line for line in video if "goog-remb" in line]
    assert any(line.endswith(" nack pli") for line in video)  # keyframes may still be asked for
    assert "m=application" in answer


async def test_video_offered_without_transport_wide_numbers_is_taken_all_the_same(
    prober: Prober,
) -> None:
    # An older browser's video: answered under aiortc's REMB, still without
    # NACK, and its packets taken off the wire by the tap (never decoded).
    _, video = await answered_video(prober, lambda offer: offer)
    assert not [line for line in video if line.endswith(" transport-cc")]
    assert not [line for line in video if line.startswith("a=rtcp-fb:") and line.endswith(" nack")]
    assert any("goog-remb" in line for line in video)
