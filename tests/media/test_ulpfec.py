"""RED and ULPFEC on the recording leg (media/ulpfec.py), on packets made here.

The FEC packets are made as RFC 5109 says (and libwebrtc's ``ForwardErrorCorrection``
does): each recovery field the XOR of the protected packets' fields, the
payload the XOR of everything after their 12-byte headers. Real Chromium FEC
goes through the same decoder in the township benchmark, where every rebuilt
packet whose retransmission also came is compared with it.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest

from media.rtp import Rtp
from media.seam import KeptPacket
from media.ulpfec import UlpfecDecoder, parse_fec, red_primary

SSRC = 0x1234ABCD
VP8 = 96


def media_packet(seq: int, ts: int, payload: bytes, *, marker: bool = False) -> bytes:
    """An RTP packet as a browser sends it: a one-byte header extension block first."""
    extension = struct.pack("!HH", 0xBEDE, 2) + bytes([0x22, 1, 2, 3, 0x51, seq & 0xFF, 0, 0])
    b1 = (0x80 if marker else 0) | VP8
    return struct.pack("!BBHII", 0x90, b1, seq, ts, SSRC) + extension + payload


def fec_packet(packets: list[bytes], base: int, *, long_mask: bool = False) -> bytes:
    """The ULPFEC packet (the RED block's data) protecting ``packets`` (full RTP packets)."""
    bodies = [p[12:] for p in packets]
    size = max(len(b) for b in bodies)
    b0 = b1 = ts = length = 0
    acc = bytearray(size)
    mask = 0
    bits = 48 if long_mask else 16
    for packet, body in zip(packets, bodies, strict=True):
        first, second, seq, stamp, _ = struct.unpack_from("!BBHII", packet)
        b0 ^= first
        b1 ^= second
        ts ^= stamp
        length ^= len(body)
        for i, byte in enumerate(body):
            acc[i] ^= byte
        mask |= 1 << (bits - 1 - ((seq - base) & 0xFFFF))
    b0 = (b0 & 0x3F) | (0x40 if long_mask else 0)
    header = struct.pack("!BBHIH", b0, b1, base, ts, length) + struct.pack("!H", size)
    return header + mask.to_bytes(bits // 8, "big") + bytes(acc)


def fed(decoder: UlpfecDecoder, packet: bytes) -> list[bytes]:
    """``packet`` as the tap gives it to the decoder (RED already taken off)."""
    seq, ts = struct.unpack_from("!HI", packet, 2)
    return decoder.add_media(seq, packet[0], packet[1], ts, packet[12:])


def frame(first_seq: int, ts: int, sizes: list[int], seed: int) -> list[bytes]:
    rng = random.Random(seed)  # noqa: S311 - test payloads
    return [
        media_packet((first_seq + i) & 0xFFFF, ts, rng.randbytes(size), marker=i == len(sizes) - 1)
        for i, size in enumerate(sizes)
    ]


def test_red_primary_block_alone_and_after_a_redundant_one() -> None:
    assert red_primary(bytes([VP8]) + b"media") == (VP8, 1)
    # A redundant block of 3 bytes (F set: type, 14-bit offset, 10-bit length) first.
    redundant = bytes([0x80 | 111, 0x00, 0x40 | 0x00, 3])
    payload = redundant + bytes([VP8]) + b"old" + b"media"
    block_type, start = red_primary(payload)
    assert (block_type, payload[start:]) == (VP8, b"media")
    for broken in (b"", bytes([0x80 | 111, 0, 0])):
        with pytest.raises(ValueError):
            red_primary(broken)


def test_a_lost_packet_is_rebuilt_as_it_was_sent() -> None:
    packets = frame(1000, 90_000, [900, 1100, 300], seed=1)
    decoder = UlpfecDecoder(SSRC, VP8)
    assert fed(decoder, packets[0]) == []
    assert fed(decoder, packets[2]) == []  # packets[1] lost on the uplink
    rebuilt = decoder.add_fec(fec_packet(packets, 1000))
    assert rebuilt == [packets[1]]
    parsed = Rtp(rebuilt[0])
    assert (parsed.sequence_number, parsed.timestamp, parsed.marker) == (1001, 90_000, 0)
    assert parsed.payload == packets[1][24:]
    assert decoder.recovered == 1


def test_the_fec_packet_may_come_before_the_loss_is_known() -> None:
    # The marker packet is the lost one: the FEC packet waits until the rest is here.
    packets = frame(65534, 4_294_967_000, [500, 700, 200], seed=2)  # numbers wrap
    decoder = UlpfecDecoder(SSRC, VP8)
    assert decoder.add_fec(fec_packet(packets, 65534)) == []
    assert fed(decoder, packets[0]) == []
    assert fed(decoder, packets[1]) == [packets[2]]
    assert Rtp(packets[2]).marker == 1


def test_one_rebuilt_packet_lets_another_fec_packet_rebuild_the_next() -> None:
    packets = frame(200, 1234, [800, 800, 800, 800, 640], seed=3)
    decoder = UlpfecDecoder(SSRC, VP8)
    for packet in (packets[0], packets[1], packets[4]):
        fed(decoder, packet)
    # Two lost (202, 203): the second FEC packet alone cannot, the first rebuilds
    # 202, and with it the second rebuilds 203.
    assert decoder.add_fec(fec_packet(packets[2:4], 202)) == []
    rebuilt = decoder.add_fec(fec_packet(packets[0:3], 200, long_mask=True))
    assert rebuilt == [packets[2], packets[3]]
    assert decoder.recovered == 2


def test_a_retransmitted_packet_is_not_used_to_rebuild_and_is_checked() -> None:
    packets = frame(10, 5, [400, 400, 400], seed=4)
    decoder = UlpfecDecoder(SSRC, VP8)
    fed(decoder, packets[0])
    # 11 came only as a retransmission (its own headers): 12 cannot be rebuilt from it.
    decoder.add_retransmission(11, packets[1][24:])
    assert decoder.add_fec(fec_packet(packets, 10)) == []
    # A packet rebuilt and later retransmitted is compared with its copy.
    other = frame(20, 6, [300, 300], seed=5)
    fed(decoder, other[0])
    assert decoder.add_fec(fec_packet(other, 20)) == [other[1]]
    decoder.add_retransmission(21, other[1][24:])
    decoder.add_retransmission(21, b"late duplicate")  # counted once
    assert (decoder.checked, decoder.mismatched) == (1, 0)
    third = frame(30, 7, [300, 300], seed=6)
    fed(decoder, third[0])
    decoder.add_fec(fec_packet(third, 30))
    decoder.add_retransmission(31, b"not what was rebuilt")
    assert (decoder.checked, decoder.mismatched) == (2, 1)


def test_nothing_is_rebuilt_twice_or_from_packets_it_does_not_protect() -> None:
    packets = frame(40, 9, [300, 300], seed=7)
    decoder = UlpfecDecoder(SSRC, VP8)
    for packet in packets:
        fed(decoder, packet)
    assert decoder.add_fec(fec_packet(packets, 40)) == []
    assert fed(decoder, packets[1]) == []  # a duplicate
    # A FEC packet whose payload type recovery does not give the media's type
    # (not this stream's FEC) rebuilds nothing.
    other = frame(50, 9, [300, 300], seed=8)
    fed(decoder, other[0])
    wrong = bytearray(fec_packet(other, 50))
    wrong[1] ^= 0x01
    assert decoder.add_fec(bytes(wrong)) == []
    assert decoder.recovered == 0


def test_malformed_fec_packets_are_refused() -> None:
    good = fec_packet(frame(1, 1, [100, 100], seed=9), 1)
    for broken in (good[:13], bytes([0x80]) + good[1:], good[:-1]):
        with pytest.raises(ValueError):
            parse_fec(broken)
    decoder = UlpfecDecoder(SSRC, VP8)
    with pytest.raises(ValueError):
        decoder.add_fec(good[:10])


async def test_the_tap_unwraps_red_rebuilds_a_loss_and_keeps_the_fec_packets_place() -> None:
    # The recorder's receive path for one video stream (``Lean``) on aiortc's
    # receiver as a Chromium offer with RED and ULPFEC sets it up; the packets
    # are made here (no network: the NACKs it would send are collected).
    from media import answer

    from .test_answer import with_red
    from .test_seam import lean_on
    from .test_twcc import CHROME_OFFER

    offer = with_red(CHROME_OFFER)
    kept: list[tuple[bool, int, bytes]] = []

    def keep(packet: KeptPacket) -> None:
        kept.append((packet[2], packet[3], packet[5]))

    # The codecs are the answer's (no RED: aiortc knows none); the offer's RTX stream is set here.
    async with lean_on(offer, keep, answer.fec_types(offer)) as (lean, _):
        ssrc, rtx_ssrc = 1111, 2222
        lean.rtx_ssrc[rtx_ssrc] = ssrc
        vp8 = b"\x10\x00\x00\x9d\x01\x2a"  # the start of a VP8 keyframe

        def sent(seq: int, payload: bytes, marker: bool = False) -> bytes:
            b1 = (0x80 if marker else 0) | VP8
            return struct.pack("!BBHII", 0x80, b1, seq, 3000, ssrc) + payload

        def red(packet: bytes, block_type: int = VP8) -> bytes:
            # The same packet as RED: its type 118, one header byte before the payload.
            return (
                bytes([packet[0], (packet[1] & 0x80) | 118])
                + packet[2:12]
                + bytes([block_type])
                + packet[12:]
            )

        media = [sent(1000, vp8 + bytes(300)), sent(1001, bytes(400)), sent(1002, bytes(50), True)]
        protection = fec_packet(media, 1000)
        fec_rtp = struct.pack("!BBHII", 0x80, 118, 1003, 3000, ssrc) + bytes([120]) + protection

        for data in (red(media[0]), red(media[2]), fec_rtp):  # 1001 lost on the uplink
            lean.handle(Rtp(data), data, 1_000, None)
        assert (
            kept
            == [
                (False, 1000, media[0][12:]),
                (True, 1002, media[2][12:]),
                (False, 1003, b""),  # the FEC packet's place: not media
                (False, 1001, media[1][12:]),  # rebuilt at once, no round trip
            ]
        )
        assert lean.nack.missing == set()  # nothing left to ask for
        # Its retransmission (RTX of the RED packet) comes after all: the same bytes.
        rtx = struct.pack("!BBHII", 0x80, 119, 7, 3000, rtx_ssrc) + (1001).to_bytes(2, "big")
        rtx += red(media[1])[12:]
        lean.handle(Rtp(rtx), rtx, 1_100, None)
        assert kept[-1] == (False, 1001, media[1][12:])
        decoder = lean.decoder
        assert decoder is not None
        assert (decoder.fec_packets, decoder.recovered, decoder.checked, decoder.mismatched) == (
            1,
            1,
            1,
            0,
        )


async def test_lost_fec_packets_between_frames_are_not_asked_for_but_lost_media_is() -> None:
    # libwebrtc never resends a FEC packet: a lost one was asked for again and
    # again (6-17 times at 10 % loss) until given up, and the end of every leg
    # waited up to 2 s for it. A VP8 frame whose first packet follows the
    # previous frame's last one (the next picture id) shows that the numbers
    # between them held only FEC packets. A frame lost whole (a picture id
    # skipped) and a frame's lost first packet are asked for as before.
    from media import answer

    from .test_answer import with_red
    from .test_seam import lean_on
    from .test_twcc import CHROME_OFFER

    offer = with_red(CHROME_OFFER)
    kept: list[tuple[int, bytes]] = []
    asked: list[list[int]] = []

    def keep(packet: KeptPacket) -> None:
        kept.append((packet[3], packet[5]))

    def nack(coroutine: Any) -> None:
        asked.append(list(coroutine.cr_frame.f_locals["lost"]))
        coroutine.close()

    async with lean_on(offer, keep, answer.fec_types(offer)) as (lean, _):
        lean._spawn = nack  # type: ignore[method-assign]

        def red(seq: int, picture_id: int, *, start: bool, marker: bool) -> bytes:
            # Chromium's VP8 descriptor: X, S, PID 0; I; a 15-bit picture id.
            descriptor = bytes([0x90 if start else 0x80, 0x80, 0x80 | picture_id >> 8])
            descriptor += bytes([picture_id & 0xFF])
            b1 = (0x80 if marker else 0) | 118
            header = struct.pack("!BBHII", 0x80, b1, seq, 90 * picture_id, 1111)
            return header + bytes([VP8]) + descriptor + bytes(100)

        def fec(seq: int, picture_id: int) -> bytes:
            header = struct.pack("!BBHII", 0x80, 118, seq, 90 * picture_id, 1111)
            return header + bytes([120]) + bytes(30)

        stream = [
            red(2000, 5, start=True, marker=False),
            red(2001, 5, start=False, marker=True),
            fec(2002, 5),  # 2003, its second FEC packet, is lost
            red(2004, 6, start=True, marker=True),
            # 2005, the first packet of picture 7, is lost
            red(2006, 7, start=False, marker=True),
            # 2007, picture 8 whole, is lost
            red(2008, 9, start=True, marker=True),
            fec(2009, 9),
            red(2010, 10, start=True, marker=True),
        ]
        for data in stream:
            lean.handle(Rtp(data), data, 1_000, None)
        assert lean.nack is not None and lean.nack.missing == {2005, 2007}
        assert asked and all(2003 not in names for names in asked), asked
        assert {2005, 2007} <= {seq for names in asked for seq in names}
        # The lost FEC packet's place is taken, before the frame after it.
        order = [seq for seq, _ in kept]
        assert order == [2000, 2001, 2002, 2003, 2004, 2006, 2008, 2009, 2010], order
        assert dict(kept)[2003] == b"" and dict(kept)[2002] == b""
