"""Transport-wide congestion-control feedback from the recorder to the browser.

The recording leg is a township clinic's only uplink in a relayed call, so the
rate Chromium sends it at is the rate of the live call. aiortc answers with
``goog-remb`` only: Chromium's estimate then rests on aiortc's receive-side
REMB estimate, climbs about 25 kbit/s a second, and under loss settles well
below what the same link carries browser to browser (#12: 503-717 kbit/s
against 733-771 at 1 Mbit/s, 5 % loss, 150 ms). Browsers talking to each other
use transport-wide feedback instead (draft-holmer-rmcat-transport-wide-cc-
extensions-01): the receiver reports when each packet arrived, and the sender's
own controller (GoogCC) judges delay and loss from it, probing up at the start.

The recorder's answer asks for it (``with_transport_cc``): the browser numbers
every packet of the connection, the tap notes each arrival (``add``, on the
loop, a dict store), and every ``INTERVAL`` one RTCP transport-feedback packet
reports the packets since the last one (``build``). aiortc's REMB is turned off
for such a leg (``tap.RtpTap``), so the browser has one controller to follow.
"""

from __future__ import annotations

import struct
import time

URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
# How often feedback is sent (libwebrtc's receiver sends every 50-250 ms,
# 100 ms by default).
INTERVAL = 0.1
# Statuses in one feedback packet (a 1,200-byte packet holds about 400).
MAX_STATUSES = 400
# A hole this long (a sender that restarted its numbering) is not reported.
MAX_HOLE = 8192
_REFERENCE_US = 64_000  # the reference time's unit
_DELTA_US = 250  # a receive delta's unit
_RTPFB, _FMT = 205, 15
_NOT_RECEIVED, _SMALL, _LARGE = 0, 1, 2


def transport_cc_id(offer_sdp: str) -> int | None:
    """The extension id the offer gives transport-wide sequence numbers, if any."""
    for line in offer_sdp.splitlines():
        if line.startswith("a=extmap:") and line.split()[-1] == URI:
            head = line[len("a=extmap:") :].split()[0]
            return int(head.split("/")[0])
    return None


def with_transport_cc(answer_sdp: str, offer_sdp: str) -> str:
    """``answer_sdp`` (aiortc's) asking for transport-wide feedback instead of REMB.

    Each media section whose offer carried the extension gets it back with the
    same id, and each payload type the offer gave ``transport-cc`` feedback
    keeps it; ``goog-remb`` goes, so Chromium follows one controller. An offer
    without the extension leaves the answer as it is.
    """
    ext_id = transport_cc_id(offer_sdp)
    if ext_id is None:
        return answer_sdp
    offered: set[tuple[int, str]] = set()  # (media section, payload type)
    with_ext: set[int] = set()
    section = -1
    for line in offer_sdp.splitlines():
        if line.startswith("m="):
            section += 1
        elif line.startswith("a=rtcp-fb:") and line.endswith(" transport-cc"):
            offered.add((section, line[len("a=rtcp-fb:") :].split()[0]))
        elif line.startswith("a=extmap:") and line.split()[-1] == URI:
            with_ext.add(section)
    out: list[str] = []
    section = -1
    for line in answer_sdp.split("\r\n"):
        if line.startswith("m="):
            section += 1
        elif line.startswith("a=rtcp-fb:") and line.endswith(" goog-remb"):
            continue
        out.append(line)
        if line.startswith("a=mid:") and section in with_ext:
            out.append(f"a=extmap:{ext_id} {URI}")
        elif line.startswith("a=rtpmap:"):
            pt = line[len("a=rtpmap:") :].split()[0]
            if (section, pt) in offered:
                out.append(f"a=rtcp-fb:{pt} transport-cc")
    return "\r\n".join(out)


def one_byte_extension(value: bytes, wanted: int) -> bytes | None:
    """Extension ``wanted``'s data in an RFC 8285 one-byte header block (0xBEDE)."""
    pos, n = 0, len(value)
    while pos < n:
        head = value[pos]
        if head == 0:
            pos += 1
            continue
        xid, length = head >> 4, (head & 0x0F) + 1
        if xid == 15:
            return None
        if xid == wanted:
            return value[pos + 1 : pos + 1 + length]
        pos += 1 + length
    return None


def extension_value(ext: tuple[int, bytes] | None, ext_id: int) -> int | None:
    """The transport-wide sequence number in an RTP header extension block."""
    if ext is None:
        return None
    profile, value = ext
    if profile == 0xBEDE:
        # ``one_byte_extension`` written out: every packet of a leg comes here
        # (profiled: 2.2 µs a packet through the two calls).
        head = (ext_id << 4) | 1  # the id, 2 bytes of data
        pos, n = 0, len(value)
        while pos < n:
            byte = value[pos]
            if byte == head:
                return value[pos + 1] << 8 | value[pos + 2] if pos + 3 <= n else None
            if byte == 0:
                pos += 1  # padding
            elif byte >> 4 == 15 or byte >> 4 == ext_id:
                return None  # the end of the block, or the id with another length
            else:
                pos += 2 + (byte & 0x0F)
        return None
    if profile & 0xFFF0 == 0x1000:  # two-byte headers: id, length, data
        pos, n = 0, len(value)
        while pos + 1 < n:
            xid = value[pos]
            if xid == 0:
                pos += 1
                continue
            length = value[pos + 1]
            if xid == ext_id and length == 2 and pos + 4 <= n:
                return int.from_bytes(value[pos + 2 : pos + 4], "big")
            pos += 2 + length
    return None


class TransportFeedback:
    """The arrivals of one connection's packets, reported in RTCP feedback."""

    def __init__(self, ext_id: int) -> None:
        """Feedback for the packets numbered in extension ``ext_id``."""
        self.ext_id = ext_id
        self.arrivals: dict[int, int] = {}  # unwrapped sequence number -> microseconds
        self.next: int | None = None  # the first number not yet reported
        self.high = -1
        self.count = 0  # feedback packets sent (8 bits on the wire)
        self.media_ssrc = 0
        self.reported = 0
        self.lost = 0

    def add(self, seq: int, ssrc: int, arrival_us: int | None = None) -> None:
        """Note that packet ``seq`` (16 bits, as on the wire) arrived (now, by default)."""
        if arrival_us is None:
            arrival_us = time.monotonic_ns() // 1000
        if self.next is None:
            self.next = self.high = seq
        else:
            ext = self.high + ((seq - self.high + 0x8000) & 0xFFFF) - 0x8000
            if ext > self.high:
                self.high = ext
            seq = ext
            if seq < self.next:
                return  # already reported (as lost): the sender has moved on
        self.arrivals[seq] = arrival_us
        self.media_ssrc = ssrc

    def build(self, sender_ssrc: int) -> list[bytes]:
        """RTCP transport-feedback packets for what arrived since the last call."""
        out: list[bytes] = []
        while self.next is not None and self.arrivals:
            if self.high - self.next > MAX_HOLE:
                self.next = min(self.arrivals)
            packet = self._one(sender_ssrc)
            if packet is None:
                break
            out.append(packet)
        return out

    def _one(self, sender_ssrc: int) -> bytes | None:
        assert self.next is not None  # noqa: S101 - build checks
        base = self.next
        first = next((s for s in range(base, self.high + 1) if s in self.arrivals), None)
        if first is None:
            return None
        if first - base >= MAX_STATUSES:
            # A hole longer than one packet holds (seconds of nothing: a
            # stalled path, or early packets the tap could not keep) is not
            # reported: the sender counts those numbers lost when no feedback
            # names them. Reported, it was all "not received" statuses, which
            # are not sent (trailing), so no number was ever passed: ``build``
            # went round for ever, a media worker at full CPU. Now ``first``
            # is always in the packet (its delta fits), so each one moves on.
            self.lost += first - base
            base = self.next = first
        reference = self.arrivals[first] // _REFERENCE_US
        at = reference * _REFERENCE_US
        statuses: list[int] = []
        deltas = bytearray()
        seq = base
        while seq <= self.high and len(statuses) < MAX_STATUSES:
            arrival = self.arrivals.get(seq)
            if arrival is None:
                statuses.append(_NOT_RECEIVED)
            else:
                delta = round((arrival - at) / _DELTA_US)
                if 0 <= delta <= 0xFF:
                    statuses.append(_SMALL)
                    deltas.append(delta)
                elif -0x8000 <= delta <= 0x7FFF:
                    statuses.append(_LARGE)
                    deltas += struct.pack("!h", delta)
                else:
                    break  # reported with a reference time of its own, next
                at += delta * _DELTA_US
                del self.arrivals[seq]
            seq += 1
        # Trailing holes are not reported yet: their packets may still come.
        while statuses and statuses[-1] == _NOT_RECEIVED:
            statuses.pop()
            seq -= 1
        self.next = seq
        self.reported += len(statuses)
        self.lost += statuses.count(_NOT_RECEIVED)
        body = struct.pack(
            "!IIHHI",
            sender_ssrc,
            self.media_ssrc,
            base & 0xFFFF,
            len(statuses),
            ((reference & 0xFFFFFF) << 8) | (self.count & 0xFF),
        )
        self.count += 1
        payload = body + _chunks(statuses) + bytes(deltas)
        padding = -len(payload) % 4
        if padding:
            payload += bytes(padding - 1) + bytes([padding])
        length = (4 + len(payload)) // 4 - 1
        first_byte = 0x80 | (0x20 if padding else 0) | _FMT
        return struct.pack("!BBH", first_byte, _RTPFB, length) + payload


def _chunks(statuses: list[int]) -> bytes:
    """Packet status chunks: runs of one symbol, else vectors of 14 or 7 symbols."""
    out = bytearray()
    i, n = 0, len(statuses)
    while i < n:
        symbol = statuses[i]
        run = 1
        while i + run < n and statuses[i + run] == symbol and run < 0x1FFF:
            run += 1
        if run >= 14 or (i + run == n and run >= 7):
            out += struct.pack("!H", (symbol << 13) | run)  # run length chunk
            i += run
            continue
        if all(s != _LARGE for s in statuses[i : i + 14]):
            chunk = 0x8000  # one bit per symbol, 14 symbols
            for k, s in enumerate(statuses[i : i + 14]):
                chunk |= s << (13 - k)
            i += 14
        else:
            chunk = 0xC000  # two bits per symbol, 7 symbols
            for k, s in enumerate(statuses[i : i + 7]):
                chunk |= s << (12 - 2 * k)
            i += 7
        out += struct.pack("!H", chunk)
    return bytes(out)
