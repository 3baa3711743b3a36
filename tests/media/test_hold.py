"""The relay's hold on its viewers' video (``media/hold.py``): what is offered,
what each forwarded packet carries, and how the recorder sizes it from the
retransmissions it waits for. Chromium honouring it is tested with a real
browser (``tests/e2e/test_relay_hold_browser.py``)."""

from __future__ import annotations

import struct

from aiortc import RTCConfiguration
from aiortc.rtp import RtpPacket

from media import hold
from media.hold import (
    HOLD_QUIET_MS,
    URI,
    WithPlayoutDelay,
    accepted_id,
    element,
    with_playout_delay,
)
from media.relay import Fanout
from media.rtp import Rtp

from .test_seam import lean_on, video_extensions
from .test_twcc import CHROME_OFFER

VP8 = 96
UNIT_MS = 10  # the extension counts in tens of ms


def read(profile: int, value: bytes, ext_id: int) -> tuple[int, int] | None:
    """What a receiver reads (a test has no other use for it): the (min, max)
    ms of the extension ``ext_id`` in a one-byte-header block (None: absent)."""
    if profile != 0xBEDE:
        return None
    i = 0
    while i < len(value):
        head = value[i]
        if head == 0:  # padding between elements
            i += 1
            continue
        found, size = head >> 4, (head & 0xF) + 1
        if found == 15:
            return None
        if found == ext_id and size == 3 and i + 4 <= len(value):
            a, b, c = value[i + 1 : i + 4]
            return ((a << 4 | b >> 4) * UNIT_MS, ((b & 0xF) << 8 | c) * UNIT_MS)
        i += 1 + size
    return None


def sections(sdp: str) -> dict[str, list[str]]:
    """Each media section's lines, by kind."""
    out: dict[str, list[str]] = {}
    kind = ""
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            kind = line[2:].split(" ")[0]
        out.setdefault(kind, []).append(line)
    return out


async def test_the_relays_offer_carries_the_extension_in_its_video_section_only() -> None:
    config = RTCConfiguration(iceServers=[])
    held = Fanout(config, video_codec="vp8", audio=True, want_keyframe=lambda: None, hold=lambda: 0)
    plain = Fanout(config, video_codec="vp8", audio=True, want_keyframe=lambda: None)
    try:
        offered = sections(await held.offer("viewer"))
        video = offered["video"]
        assert f"a=extmap:5 {URI}" in video
        # SDP's order within a section: m=, c=, then the attributes.
        assert [line[0] for line in video[:3]] == ["m", "c", "a"]
        assert not any(URI in line for line in offered["audio"])
        # The id is none of aiortc's own (BUNDLE shares them across sections).
        fives = [line for lines in offered.values() for line in lines if "extmap:5 " in line]
        assert fives == [f"a=extmap:5 {URI}"]
        # Without a hold to tell (``relay_hold_max_ms = 0``) nothing is offered.
        assert URI not in await plain.offer("viewer")
    finally:
        await held.close()
        await plain.close()


def test_the_viewers_answer_says_whether_and_under_which_id_it_took_it() -> None:
    answer = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=extmap:5 " + URI + "\r\n"  # not video
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    )
    assert accepted_id(answer) is None
    assert accepted_id(answer + f"a=extmap:5/recvonly {URI}\r\n") == 5
    assert accepted_id(answer + f"a=extmap:15 {URI}\r\n") is None  # not a one-byte id
    assert accepted_id(with_playout_delay(CHROME_OFFER)) == 5


def test_an_element_holds_min_and_max_in_tens_of_ms() -> None:
    assert element(5, 420) == bytes([0x52, 0x02, 0xA3, 0xE8])  # 42 and 1000 units
    assert read(0xBEDE, element(5, 420), 5) == (420, hold.MAX_MS)
    assert read(0xBEDE, b"\x00\x00" + element(7, 0, 50), 7) == (0, 50)  # after padding
    assert read(0xBEDE, element(5, 420), 6) is None
    assert read(0x1000, element(5, 420), 5) is None  # the two-byte form is not read
    assert element(5, 10**6, 10**7) == bytes([0x52, 0xFF, 0xFF, 0xFF])  # 12 bits each


def test_each_packet_carries_the_hold_beside_aiortcs_own_extensions() -> None:
    base = video_extensions()
    delayed = WithPlayoutDelay(base, 5)

    def sent() -> bytes:
        packet = RtpPacket(payload_type=VP8, sequence_number=7, timestamp=9000)
        packet.payload = b"media"
        packet.extensions.mid = "1"
        packet.extensions.abs_send_time = 0x123456
        return packet.serialize(delayed)

    def carried(data: bytes) -> tuple[int, int] | None:
        assert Rtp(data).payload == b"media"
        parsed = RtpPacket.parse(data, base)
        assert (parsed.extensions.mid, parsed.extensions.abs_send_time) == ("1", 0x123456)
        ext = Rtp(data).ext
        assert ext is not None
        return read(ext[0], ext[1], 5)

    delayed.hold(0)  # no hold asked for yet: no extension at all
    assert carried(sent()) is None
    delayed.hold(350)
    assert carried(sent()) == (350, hold.MAX_MS)
    delayed.hold(0)  # the hold is over: a minimum Chromium takes as "none" to speak of
    assert carried(sent()) == (hold.RELEASED_MS, hold.MAX_MS)
    assert delayed.most_ms == 350


async def test_the_hold_is_the_time_a_retransmission_takes_while_the_uplink_needs_them() -> None:
    # The recorder's receive path of one video stream (``Lean``) on aiortc's
    # receiver; packets are made here and the NACKs it would send collected.
    async with lean_on(CHROME_OFFER) as (lean, video):
        vp8 = next(c.payloadType for c in video._codecs if c.mimeType == "video/VP8")
        ssrc = 4242

        def packet(seq: int, at_ms: int) -> None:
            data = struct.pack("!BBHII", 0x80, vp8, seq, 90 * at_ms, ssrc) + b"\x10\x00\x00\x9d"
            lean.handle(Rtp(data), data, at_ms, None)

        seq, now = 100, 10_000
        packet(seq, now)
        # A clean stream holds nothing; neither do two repairs alone.
        for _ in range(50):
            seq, now = seq + 1, now + 20
            packet(seq, now)
        assert lean.hold_ms(now) == 0
        # Packets lost, each back (retransmitted) 280 ms after its loss showed,
        # but one in ten whose retransmission was lost too (900 ms).
        for repair in range(40):
            lost = seq + 1
            seq, now = seq + 2, now + 40
            packet(seq, now)  # reveals the hole
            took = 900 if repair % 10 == 9 else 280
            packet(lost, now + took)  # aiortc's RTX is unwrapped before this point
            if repair == 1:
                assert lean.hold_ms(now + took) == 0  # two repairs: not yet
            if repair == 2:
                assert lean.hold_ms(now + took) == 350  # 280 ms and the margin, in 50 ms steps
        # Nine in ten came within 280 ms: the slow ones would hold every frame 900 ms.
        assert lean.hold_ms(now) == 350
        # The link gets worse: a retransmission now takes 420 ms.
        for _ in range(40):
            lost = seq + 1
            seq, now = seq + 2, now + 40
            packet(seq, now)
            packet(lost, now + 420)
        assert lean.hold_ms(now) == 500
        # A hold is given back once the link has needed no repair for a while.
        assert lean.hold_ms(now + HOLD_QUIET_MS - 1_000) == 500
        assert lean.hold_ms(now + HOLD_QUIET_MS + 1_000) == 0
