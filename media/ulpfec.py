"""RED and ULPFEC on the recording leg: packets lost on the uplink rebuilt without a round trip.

Browser to browser, Chromium sends its video wrapped in RED (RFC 2198) with
ULPFEC (RFC 5109) packets among the media: each FEC packet is the XOR of a
group of media packets, and a receiver that lost one packet of the group
rebuilds it from the others at once. aiortc negotiates neither, so the
recording leg (and, relayed, the live call) repaired every loss on a township
uplink by NACK: a round trip or two (300-1,000 ms at 10 % loss and 300 ms),
each a freeze of the relayed picture (#12). The recorder's answer now accepts
RED and ULPFEC (``media/answer.py``); the tap unwraps RED and feeds this decoder
(``media/lean.py``), whose rebuilt packets go to the file and to the viewers as
if they had arrived.

What a FEC packet protects is the media packet as the sender had it before RED
(libwebrtc's ``RtpSenderEgress`` protects the RED packet with its media
payload type put back and the RED header taken off; its ``UlpfecReceiver``
does the same to what arrives). The XOR covers the 12-byte header's fields one
by one (P, X, CC, M, PT, timestamp, the length) and everything after it as
bytes: CSRCs, header extensions, payload. So only packets that came as they
were sent are used to rebuild others: a retransmission (RTX) has headers of
its own.

Pure: no aiortc, no sockets; ``tests/media/test_ulpfec.py``.
"""

from __future__ import annotations

import struct
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from media.rtp import Rtp

# Media packets kept to rebuild others from (about 4 s of 1 Mbit/s video), and
# FEC packets kept waiting for a second loss of their group to be repaired.
MEDIA_KEPT = 512
FEC_KEPT = 64
# Rebuilt payloads kept to compare with their retransmission, if one comes.
CHECK_KEPT = 256

_FEC_HEADER = struct.Struct("!BBHIH")  # E L P X CC | M PT | SN base | TS | length
_RTP_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True)
class FecTypes:
    """The payload types of a video stream sent with RED and ULPFEC (from the offer)."""

    red: int
    ulpfec: int
    red_rtx: int | None = None  # RTX of RED packets (retransmissions)


def red_primary(payload: bytes) -> tuple[int, int]:
    """The primary (last) block of a RED payload: its payload type and where its data starts.

    A block header is 4 bytes while its F bit is set (a redundant block:
    payload type, timestamp offset, length), then 1 byte (the primary's type).

    Raises:
        ValueError: the payload is not RED.
    """
    pos = 0
    n = len(payload)
    while pos < n and payload[pos] & 0x80:
        pos += 4
    if pos >= n:
        raise ValueError("RED payload without a primary block")
    skipped = 0
    for block in range(0, pos, 4):
        skipped += (payload[block + 2] & 0x03) << 8 | payload[block + 3]
    start = pos + 1 + skipped  # the redundant blocks' data comes first
    if start > n:
        raise ValueError("RED blocks longer than the payload")
    return payload[pos] & 0x7F, start


@dataclass(eq=False)
class _Fec:
    """One FEC packet: its recovery fields and the media it protects."""

    protected: tuple[int, ...]
    b0: int
    b1: int
    ts: int
    length: int
    payload: bytes
    missing: set[int] = field(default_factory=set)
    dead: bool = False


def parse_fec(data: bytes) -> _Fec:
    """A ULPFEC packet (the RED block's data): its header, level-0 mask and payload.

    Raises:
        ValueError: not a ULPFEC packet this decoder reads.
    """
    if len(data) < 14:
        raise ValueError("ULPFEC packet too short")
    b0, b1, base, ts, length = _FEC_HEADER.unpack_from(data)
    if b0 & 0x80:
        raise ValueError("ULPFEC extension bit set")
    mask_size = 6 if b0 & 0x40 else 2
    header = 10 + 2 + mask_size
    if len(data) < header:
        raise ValueError("ULPFEC mask truncated")
    protection = data[10] << 8 | data[11]
    mask = int.from_bytes(data[12 : 12 + mask_size], "big")
    bits = 8 * mask_size
    protected = tuple((base + i) & 0xFFFF for i in range(bits) if mask >> (bits - 1 - i) & 1)
    payload = data[header : header + protection]
    if not protected or len(payload) != protection:
        raise ValueError("ULPFEC payload shorter than its protection length")
    return _Fec(protected, b0, b1, ts, length, payload)


class UlpfecDecoder:
    """Rebuilds lost media packets of one stream from its ULPFEC packets.

    ``add_media`` each media packet as sent (RED taken off), ``add_fec`` each FEC
    packet; both return the packets rebuilt (whole RTP packets, the stream's
    SSRC in them). ``add_retransmission`` notes a packet that came again (not
    used to rebuild others) and checks it against its rebuilt copy.
    """

    def __init__(self, ssrc: int, media_type: int) -> None:
        """A decoder for the stream ``ssrc`` whose media payload type is ``media_type``."""
        self.ssrc = ssrc
        self.media_type = media_type
        # seq -> (byte 0, byte 1, timestamp, everything after the fixed header)
        self.media: OrderedDict[int, tuple[int, int, int, bytes]] = OrderedDict()
        self.received: OrderedDict[int, None] = OrderedDict()  # by any way
        self.fecs: deque[_Fec] = deque()
        self.waiting: dict[int, list[_Fec]] = {}  # a missing seq -> FEC packets protecting it
        self.rebuilt_payloads: OrderedDict[int, bytes] = OrderedDict()
        # What it did: FEC packets taken, packets rebuilt, rebuilt packets
        # whose retransmission came and matched or did not.
        self.fec_packets = 0
        self.recovered = 0
        self.checked = 0
        self.mismatched = 0

    def add_media(self, seq: int, b0: int, b1: int, ts: int, body: bytes) -> list[bytes]:
        """A media packet as sent: first two header bytes (PT the media's), timestamp,
        and the bytes after the 12-byte header. Returns the packets it lets rebuild."""
        if seq in self.received:
            return []
        self._remember(seq, (b0, b1, ts, body))
        return self._arrived(seq)

    def add_retransmission(self, seq: int, payload: bytes) -> None:
        """A packet that came again (RTX): kept out of rebuilding; compared with
        its rebuilt copy (``payload``: its RTP payload) if it was rebuilt."""
        rebuilt = self.rebuilt_payloads.pop(seq, None)
        if rebuilt is not None:
            self.checked += 1
            if rebuilt != payload:
                self.mismatched += 1
        if seq not in self.received:
            self._note_received(seq)
            for fec in self.waiting.pop(seq, []):
                fec.missing.discard(seq)

    def add_fec(self, data: bytes) -> list[bytes]:
        """A FEC packet (the RED block's data); the packets it lets rebuild.

        Raises:
            ValueError: not a ULPFEC packet.
        """
        fec = parse_fec(data)
        self.fec_packets += 1
        fec.missing = {seq for seq in fec.protected if seq not in self.received}
        if not fec.missing:
            return []
        if len(fec.missing) == 1:
            return self._rebuild_from(fec)
        self.fecs.append(fec)
        for seq in fec.missing:
            self.waiting.setdefault(seq, []).append(fec)
        while len(self.fecs) > FEC_KEPT:
            self._forget(self.fecs.popleft())
        return []

    def _remember(self, seq: int, packet: tuple[int, int, int, bytes]) -> None:
        self.media[seq] = packet
        if len(self.media) > MEDIA_KEPT:
            self.media.popitem(last=False)
        self._note_received(seq)

    def _note_received(self, seq: int) -> None:
        self.received[seq] = None
        if len(self.received) > MEDIA_KEPT:
            self.received.popitem(last=False)

    def _arrived(self, seq: int) -> list[bytes]:
        """``seq`` is here: rebuild what the FEC packets waiting on it now can, in cascade."""
        out: list[bytes] = []
        here = [seq]
        while here:
            now = here.pop()
            for fec in self.waiting.pop(now, []):
                fec.missing.discard(now)
                if not fec.dead and len(fec.missing) == 1:
                    rebuilt = self._rebuild(fec, out)
                    if rebuilt is not None:
                        here.append(rebuilt)
        return out

    def _rebuild_from(self, fec: _Fec) -> list[bytes]:
        out: list[bytes] = []
        rebuilt = self._rebuild(fec, out)
        if rebuilt is not None:
            out += self._arrived(rebuilt)
        return out

    def _forget(self, fec: _Fec) -> None:
        fec.dead = True
        for seq in fec.missing:
            waiting = self.waiting.get(seq)
            if waiting is not None:
                waiting[:] = [f for f in waiting if f is not fec]
                if not waiting:
                    del self.waiting[seq]

    def _rebuild(self, fec: _Fec, out: list[bytes]) -> int | None:
        """Rebuild ``fec``'s one missing packet into ``out``; its seq (None: it cannot)."""
        fec.dead = True
        (target,) = fec.missing
        if target in self.received:
            return None
        b0, b1, ts, length = fec.b0, fec.b1, fec.ts, fec.length
        size = len(fec.payload)
        acc = int.from_bytes(fec.payload, "big")
        for seq in fec.protected:
            if seq == target:
                continue
            packet = self.media.get(seq)
            if packet is None:
                return None  # came only as a retransmission, or too long ago
            p0, p1, p_ts, body = packet
            if len(body) > size:
                return None  # longer than what the FEC packet covers: not its group
            b0 ^= p0
            b1 ^= p1
            ts ^= p_ts
            length ^= len(body)
            acc ^= int.from_bytes(body, "big") << 8 * (size - len(body))
        if length > size or b1 & 0x7F != self.media_type:
            return None
        body = acc.to_bytes(size, "big")[:length]
        b0 = 0x80 | (b0 & 0x3F)
        data = _RTP_HEADER.pack(b0, b1, target, ts, self.ssrc) + body
        try:
            payload = Rtp(data).payload
        except ValueError:
            return None  # the CSRCs, extension or padding do not fit
        self._remember(target, (b0, b1, ts, body))
        self.recovered += 1
        self.rebuilt_payloads[target] = payload
        if len(self.rebuilt_payloads) > CHECK_KEPT:
            self.rebuilt_payloads.popitem(last=False)
        out.append(data)
        return target
