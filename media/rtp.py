"""Per-packet pieces of the lean receive path (``media/tap.py``), each faster
than aiortc's own for the one case the tap needs: reading an RTP header,
decrypting SRTP, counting a packet that comes in order; and telling whether a
video packet begins a keyframe (the start of a leg).

They mirror aiortc's and pylibsrtp's internals; ``tests/media/test_seam.py``
compares each with the original.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
import pylibsrtp._binding as srtp_binding  # type: ignore[import-not-found]  # cffi, no stubs
from aiortc.codecs.vpx import VpxPayloadDescriptor

_HEADER = struct.Struct("!BBHII")


class Rtp:
    """The parts of an RTP packet the tap and aiortc's bookkeeping read.

    Lighter than aiortc's ``RtpPacket.parse``, which decodes every header
    extension of every packet: the extension block is kept as it is (read
    only for what is needed: the transport-wide number, abs-send-time for REMB).
    Built for every packet, so it does no more than it must: the header in one
    ``struct`` call, the rest by indexing (profiled: 2.9 µs a packet before).
    """

    __slots__ = (
        "ext",
        "marker",
        "padding_size",
        "payload",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    def __init__(self, data: bytes) -> None:
        n = len(data)
        if n < 12:
            raise ValueError("RTP packet too short")
        first, m_pt, self.sequence_number, self.timestamp, self.ssrc = _HEADER.unpack_from(data)
        if first & 0xC0 != 0x80:
            raise ValueError("not RTP version 2")
        self.marker = m_pt >> 7
        self.payload_type = m_pt & 0x7F
        pos = 12 + 4 * (first & 0x0F)
        if first & 0x10:
            if n < pos + 4:
                raise ValueError("RTP extension truncated")
            end = pos + 4 + 4 * (data[pos + 2] << 8 | data[pos + 3])
            ext: tuple[int, bytes] | None = (data[pos] << 8 | data[pos + 1], data[pos + 4 : end])
            pos = end
        else:
            ext = None
        self.ext = ext
        if n < pos:
            raise ValueError("RTP packet truncated")
        if first & 0x20:
            pad = data[-1]
            if not pad or pad > n - pos:
                raise ValueError("RTP padding invalid")
            self.padding_size = pad
            self.payload = data[pos:-pad]
        else:
            self.padding_size = 0
            self.payload = data[pos:]


# An RFC 8285 one-byte extension header for each id with 3 bytes of data (abs-send-time).
ABS_SEND_TIME_FIRST = [bytes([(xid << 4) | 2]) for xid in range(16)]


def unprotector(session: Any) -> Callable[[bytes], bytes]:
    """``session.unprotect`` (pylibsrtp) without its per-call allocation and checks:
    the same libsrtp call on the session's own buffer."""
    ffi, lib = srtp_binding.ffi, srtp_binding.lib
    cdata, buffer, ctx = session._cdata, session._buffer, session._srtp[0]
    size = len(cdata)
    length = ffi.new("int *")
    unprotect = lib.srtp_unprotect

    def run(data: bytes) -> bytes:
        n = len(data)
        if n > size:
            raise ValueError("packet is too long")
        length[0] = n
        buffer[0:n] = data
        if unprotect(ctx, cdata, length):
            raise pylibsrtp.Error("srtp_unprotect failed")
        out: bytes = buffer[0 : length[0]]
        return out

    return run


def next_in_order(stats: Any, seq: int, timestamp: int) -> None:
    """aiortc's ``StreamStatistics.add`` for the packet after the newest one.

    The same statements for that case (the receiver reports' counts and
    jitter), without the calls its general case makes for every packet.
    ``tests/media/test_seam.py`` compares it with aiortc's after every packet.
    """
    stats.packets_received += 1
    arrival = int(time.time() * stats._clockrate)
    if seq < stats.max_seq:
        stats.cycles += 1 << 16
    stats.max_seq = seq
    last_timestamp = stats._last_timestamp
    if timestamp != last_timestamp and stats.packets_received > 1:
        diff = abs((arrival - stats._last_arrival) - (timestamp - last_timestamp))
        stats._jitter_q4 += diff - ((stats._jitter_q4 + 8) >> 4)
    stats._last_arrival = arrival
    stats._last_timestamp = timestamp


def starts_keyframe(mime_type: str, payload: bytes) -> bool:
    """Whether a video RTP payload is the first packet of a keyframe.

    VP8: the start of partition 0 of a frame whose key bit is clear. H.264:
    an SPS (a browser sends SPS and PPS before each IDR, alone or in a STAP-A)
    or the first fragment of an IDR slice. Anything unreadable is not.
    """
    codec = mime_type.lower()
    try:
        if codec == "video/vp8":
            if not payload or payload[0] & 0x17 != 0x10:
                return False  # S clear or a later partition: read no further
            vp8, data = VpxPayloadDescriptor.parse(payload)
            return (
                bool(vp8.partition_start)
                and vp8.partition_id == 0
                and data[:1] != b""
                and (data[0] & 1 == 0)
            )
        if codec == "video/h264" and payload:
            nal = payload[0] & 0x1F
            if nal == 24:  # STAP-A: the first NAL unit it carries
                nal = payload[3] & 0x1F if len(payload) > 3 else 0
            elif nal == 28:  # FU-A: its first fragment
                if len(payload) < 2 or not payload[1] & 0x80:
                    return False
                nal = payload[1] & 0x1F
            return nal in (5, 7)
    except ValueError:
        return False
    return False


def vp8_picture_id(payload: bytes) -> int | None:
    """The picture id of a VP8 payload descriptor (RFC 7741 4.2; None: none), as
    ``VpxPayloadDescriptor.parse`` reads it, without building the descriptor."""
    if len(payload) < 3 or not payload[0] & 0x80 or not payload[1] & 0x80:
        return None
    if payload[2] & 0x80:
        return ((payload[2] & 0x7F) << 8) | payload[3] if len(payload) > 3 else None
    return payload[2] & 0x7F


def pictures_skipped(last: int, picture_id: int) -> int:
    """How many VP8 picture ids lie between ``last`` and ``picture_id`` (7 or 15
    bits, wrapping): frames lost whole, packets and all, when more than 0."""
    wrap = 0x8000 if picture_id > 0x7F or last > 0x7F else 0x80
    return (picture_id - last - 1) % wrap
