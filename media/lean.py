"""One receiver's share of the lean receive path (``media/tap.py``): aiortc's
bookkeeping without its frame path.

For each packet the tap hands it, ``Lean`` feeds aiortc's NACK generator
(asking again after a lost retransmission, and for the start of a leg's first
keyframe), its receive statistics (the RTCP receiver reports), active sources
(PLI targets) and, without transport-wide feedback, its REMB estimator, as
``RTCRtpReceiver._handle_rtp_packet`` feeds them; then the payload goes to
``keep``. Video sent in RED with ULPFEC is unwrapped here and lost packets are
rebuilt (``media/ulpfec.py``). It reaches into aiortc's private parts;
``seam.check`` verifies them (``tests/media/test_seam.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import aiortc.rtcrtpreceiver as rtcrtpreceiver
from aiortc import RTCRtpReceiver, clock
from aiortc.codecs import is_rtx
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci

from media import twcc
from media.assembler import START_SLACK
from media.hold import HOLD_QUIET_MS, HOLD_REPAIRS, HOLD_SAMPLES, hold_for
from media.rtp import (
    ABS_SEND_TIME_FIRST,
    Rtp,
    next_in_order,
    pictures_skipped,
    starts_keyframe,
    vp8_picture_id,
)
from media.seam import KeptPacket
from media.sendqueue import SendQueue
from media.speedups import speed_up_estimator, speed_up_nack
from media.ulpfec import FecTypes, UlpfecDecoder, red_primary

# REMB feedback is sent at most this often (ms).
REMB_MIN_GAP_MS = 200
# A missing packet is asked for again every 1.5 round trips (within these
# bounds), for at most NACK_GIVE_UP_MS (as long as the packet log waits for a hole).
NACK_RETRY_MIN_MS = 40
NACK_RETRY_MAX_MS = 400
NACK_GIVE_UP_MS = 2000
# ... and until this many newer packets have come. aiortc's NACK generator
# forgets a missing number once 128 have: at the 100-250 packets a second of a
# browser's leg that was 0.5-1.3 s, so a packet whose resend was lost too was
# no longer asked for, and its frame and every frame up to a keyframe asked for
# 2 s later were lost (58 frames in a 20 s township call at 10 % loss and
# 300 ms). libwebrtc's receiver keeps up to 1,000 missing numbers; the time
# above is what bounds them here (2 s of a 5 Mbit/s leg is about 1,000 packets).
NACK_HISTORY = 1000
# The most FEC packets libwebrtc sends after a frame (as many as its media
# packets, at most 48: ``kUlpfecMaxMediaPackets``), and one.
MAX_FEC_RUN = 49
# The receiver's list of active sources (PLI targets) is refreshed this often (ms).
ACTIVE_SSRC_EVERY_MS = 1000


class Lean:
    """One receiver's share of the tap: aiortc's bookkeeping without its frame path."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        kind: str,
        keep: Callable[[KeptPacket], None],
        relaying: Callable[[], bool],
        extensions: Any,
        fec: FecTypes | None = None,
    ) -> None:
        self.receiver = receiver
        self.audio = kind == "audio"
        self.keep = keep
        self.relaying = relaying
        self.extensions = extensions
        get = receiver.__dict__.__getitem__
        self.active_ssrc: dict[int, Any] = get("_RTCRtpReceiver__active_ssrc")
        self.codecs: dict[int, Any] = get("_RTCRtpReceiver__codecs")
        self.remote_streams: dict[int, Any] = get("_RTCRtpReceiver__remote_streams")
        self.rtx_ssrc: dict[int, int] = get("_RTCRtpReceiver__rtx_ssrc")
        self.nack = get("_RTCRtpReceiver__nack_generator")
        if self.nack is not None:
            speed_up_nack(self.nack, NACK_HISTORY)
        self.estimator = get("_RTCRtpReceiver__remote_bitrate_estimator")
        if self.estimator is not None:
            speed_up_estimator(self.estimator)
        self.tasks: set[asyncio.Task[None]] = set()
        self.remb_at = -REMB_MIN_GAP_MS
        self.active_at: dict[int, int] = {}
        # payload type -> is it RTX (aiortc's codec lookup, done once per type)
        self.rtx: dict[int, bool] = {}
        # Missing sequence numbers -> when they were first asked for (ms), the
        # last NACK sent, and the smoothed time a NACK takes to be answered.
        self.nack_asked: dict[int, int] = {}
        self.nack_at = 0
        self.nack_rtt_ms = 150.0
        self.repaired_at: deque[int] = deque(maxlen=HOLD_REPAIRS)  # the last repairs (ms)
        self.repair_ms: deque[int] = deque(maxlen=HOLD_SAMPLES)  # how long each took
        self._hold: int | None = None  # from repair_ms (None: to be computed again)
        self.media_ssrc: int | None = None  # the SSRC NACKs name (not the RTX one)
        # RED and ULPFEC (video, when the answer accepted them): RED payload
        # type -> whether it is RTX's; the decoder of the stream, made with its
        # first RED packet.
        self.fec = fec
        self.red_types: dict[int, bool] = {}
        if fec is not None and not self.audio:
            self.red_types[fec.red] = False
            if fec.red_rtx is not None:
                self.red_types[fec.red_rtx] = True
        self.decoder: UlpfecDecoder | None = None
        self.media_types: dict[int, int | None] = {}  # codec -> its RTX (from the answer)
        # The browser's pacer queue for this video, from its first sends' times.
        self.send_queue = None if self.audio else SendQueue()
        # The last VP8 frame's end seen in RED (SSRC, sequence number, picture
        # id, timestamp of its marker packet): see ``_fec_places``.
        self.frame_end: tuple[int, int, int, int] | None = None

    def _spawn(self, coro: Any) -> None:
        # Sending RTCP is a coroutine in aiortc; it is rare (a NACK, a REMB).
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _is_rtx(self, payload_type: int) -> bool | None:
        rtx = self.rtx.get(payload_type)
        if rtx is None:
            codec = self.codecs.get(payload_type)
            if codec is None:
                return None  # unknown payload type: aiortc drops it
            rtx = self.rtx[payload_type] = is_rtx(codec)
        return rtx

    def handle(
        self, packet: Rtp, plain: bytes, arrival_ms: int, arrival: float | None = None
    ) -> None:
        """One packet of this receiver (``arrival``: ``time.monotonic()`` it came, if known)."""
        receiver = self.receiver
        if not receiver._enabled:
            return
        if packet.payload_type in self.red_types:
            self._red(packet, plain, arrival_ms, arrival)
            return
        rtx = self.rtx.get(packet.payload_type)
        if rtx is None:
            rtx = self._is_rtx(packet.payload_type)
            if rtx is None:
                return
        payload = packet.payload
        if rtx:
            if packet.ssrc not in self.rtx_ssrc or len(payload) < 3:
                payload = b""  # padding probes carry no media
            else:
                seq = int.from_bytes(payload[:2], "big")
                payload = payload[2:]
        else:
            seq = packet.sequence_number
            send_queue = self.send_queue
            if send_queue is not None and payload and self._has_abs_send_time():
                sent = self._abs_send_time(packet)
                if sent is not None:
                    send_queue.add(
                        packet.ssrc,
                        sent,
                        packet.timestamp,
                        time.monotonic() if arrival is None else arrival,
                    )
        if self.relaying():
            # Viewers need whole frames now: aiortc's full path (NACK, REMB,
            # jitter buffer, the track the relay reads) runs as before.
            self._spawn(
                receiver._handle_rtp_packet(
                    RtpPacket.parse(plain, self.extensions), arrival_time_ms=arrival_ms
                )
            )
        else:
            self._bookkeeping(packet, rtx, arrival_ms)
        if payload:
            self.keep(
                (
                    time.monotonic() if arrival is None else arrival,
                    self.audio,
                    packet.marker == 1,
                    seq,
                    packet.timestamp,
                    payload,
                )
            )

    def _media_types(self) -> dict[int, int | None]:
        """The video codecs' payload types (what RED may carry), each with its RTX's."""
        if not self.media_types:
            apt = {c.parameters.get("apt"): pt for pt, c in self.codecs.items() if is_rtx(c)}
            self.media_types = {pt: apt.get(pt) for pt, c in self.codecs.items() if not is_rtx(c)}
        return self.media_types

    def _red(self, packet: Rtp, plain: bytes, arrival_ms: int, arrival: float | None) -> None:
        """A RED packet (or its retransmission): the media it carries takes the
        usual way as a plain packet, a FEC packet is counted where it lies in the
        stream (NACKs, receive statistics, the file's sequence) and rebuilds
        what it can (``media/ulpfec.py``)."""
        types = self._media_types()
        fec = self.fec
        if not types or fec is None:
            return
        rtx = self.red_types[packet.payload_type]
        payload = packet.payload
        if rtx:
            if packet.ssrc not in self.rtx_ssrc or len(payload) < 3:
                any_rtx = next((r for r in types.values() if r is not None), None)
                if any_rtx is not None:  # a padding probe: counted as plain RTX's are
                    packet.payload_type = any_rtx
                    packet.payload = b""
                    self.handle(packet, plain, arrival_ms, arrival)
                return
            osn, inner = payload[:2], payload[2:]
        else:
            osn, inner = b"", payload
        try:
            block_type, start = red_primary(inner)
        except ValueError:
            return
        data = inner[start:]
        decoder = self.decoder
        if block_type == fec.ulpfec:
            if rtx:
                return  # libwebrtc does not resend FEC; nothing to count it as
            if decoder is None or decoder.ssrc != packet.ssrc:
                decoder = self.decoder = UlpfecDecoder(packet.ssrc, next(iter(types)))
            # Not media: the stream's sequence goes on past it (a filler in the
            # file's sequence, an empty packet to the viewers).
            packet.payload_type = next(iter(types))
            packet.payload = b""
            self._bookkeeping(packet, False, arrival_ms)
            self.keep(
                (
                    time.monotonic() if arrival is None else arrival,
                    False,
                    False,
                    packet.sequence_number,
                    packet.timestamp,
                    b"",
                )
            )
            try:
                rebuilt = decoder.add_fec(data)
            except ValueError:
                return
            self._rebuilt(rebuilt, arrival)
            return
        if block_type not in types:
            return  # not a codec of this stream
        if rtx:
            media_rtx = types[block_type]
            if media_rtx is None:
                return
            if decoder is not None:
                decoder.add_retransmission(int.from_bytes(osn, "big"), data)
            packet.payload_type = media_rtx
            packet.payload = osn + data
            self.handle(packet, plain, arrival_ms, arrival)
            return
        if decoder is None or decoder.ssrc != packet.ssrc:
            decoder = self.decoder = UlpfecDecoder(packet.ssrc, block_type)
        decoder.media_type = block_type
        # The packet as it was before RED: what the FEC packets protect.
        rebuilt = []
        if start == 1:
            header_end = len(plain) - packet.padding_size - len(payload)
            body = plain[12:header_end] + plain[header_end + 1 :]
            b1 = (plain[1] & 0x80) | block_type
            rebuilt = decoder.add_media(
                packet.sequence_number, plain[0], b1, packet.timestamp, body
            )
        else:
            decoder.add_retransmission(packet.sequence_number, data)
        if self.codecs[block_type].mimeType.lower() == "video/vp8":
            self._fec_places(packet, data, arrival)
        packet.payload_type = block_type
        packet.payload = data
        self.handle(packet, plain, arrival_ms, arrival)
        self._rebuilt(rebuilt, arrival)

    def _fec_places(self, packet: Rtp, data: bytes, arrival: float | None) -> None:
        """VP8 in RED, first sends only: the numbers between a frame's last packet
        and the first packet of the frame after it (the next picture id) held
        only FEC packets. Those lost are not asked for (libwebrtc never resends
        FEC: each was asked for 6-17 times until given up, and the end of every
        leg waited up to 2 s for them) and take their place in the file's
        sequence and the viewers' as FEC packets that came do (empty)."""
        starts = bool(data) and data[0] & 0x17 == 0x10  # S set, partition 0
        if not starts and not packet.marker:
            return  # the middle of a frame
        picture_id = vp8_picture_id(data)
        if picture_id is None:
            return
        seq = packet.sequence_number
        end, nack = self.frame_end, self.nack
        if packet.marker:
            self.frame_end = (packet.ssrc, seq, picture_id, packet.timestamp)
        if not starts or end is None or nack is None or nack.max_seq is None:
            return  # not the first packet of a frame, or no frame end known
        ssrc, last_seq, last_id, last_ts = end
        span = (seq - last_seq) & 0xFFFF
        newest = (nack.max_seq - last_seq) & 0xFFFF
        if ssrc != packet.ssrc or pictures_skipped(last_id, picture_id):
            return  # a frame may have been lost whole between them
        if not 1 < span <= MAX_FEC_RUN or newest >= span:
            return
        now = time.monotonic() if arrival is None else arrival
        for ahead in range(1, span):
            place = (last_seq + ahead) & 0xFFFF
            if ahead <= newest:
                if place not in nack.missing:
                    continue  # it came
                nack.missing.discard(place)
                self.nack_asked.pop(place, None)
            self.keep((now, False, False, place, last_ts, b""))
        nack.max_seq = (seq - 1) & 0xFFFF

    def _rebuilt(self, packets: list[bytes], arrival: float | None) -> None:
        """Packets ULPFEC rebuilt: no longer asked for; to the file and the viewers."""
        nack = self.nack
        for data in packets:
            try:
                packet = Rtp(data)
            except ValueError:
                continue
            seq = packet.sequence_number
            if nack is not None:
                nack.missing.discard(seq)
                self.nack_asked.pop(seq, None)
            if packet.payload:
                self.keep(
                    (
                        time.monotonic() if arrival is None else arrival,
                        False,
                        packet.marker == 1,
                        seq,
                        packet.timestamp,
                        packet.payload,
                    )
                )

    def _has_abs_send_time(self) -> bool:
        """Whether the answer negotiated abs-send-time (else ``_abs_send_time``
        would parse every extension of every packet to find none)."""
        return bool(self.extensions.__dict__["_HeaderExtensionsMap__ids"].abs_send_time)

    def _abs_send_time(self, packet: Rtp) -> int | None:
        if packet.ext is None:
            return None
        profile, value = packet.ext
        wanted = self.extensions.__dict__["_HeaderExtensionsMap__ids"].abs_send_time
        if profile == 0xBEDE and wanted:
            if wanted < 15 and len(value) >= 4 and value[:1] == ABS_SEND_TIME_FIRST[wanted]:
                # first among the extensions, as browsers send it
                return int.from_bytes(value[1:4], "big")
            raw = twcc.one_byte_extension(value, wanted)
            return int.from_bytes(raw, "big") if raw is not None and len(raw) == 3 else None
        value_time: int | None = self.extensions.get(profile, value).abs_send_time
        return value_time

    def _estimate(self, packet: Rtp, arrival_ms: int) -> None:
        """The REMB path (a leg without transport-wide feedback): aiortc's
        estimator, and its REMB sent a few times a second."""
        abs_send_time = self._abs_send_time(packet)
        if abs_send_time is None:
            return
        size = len(packet.payload) + packet.padding_size
        # (arrival, abs-send-time, size, SSRC): positional, as it is called per packet
        remb = self.estimator.add(arrival_ms, abs_send_time, size, packet.ssrc)
        receiver = self.receiver
        rtcp_ssrc = receiver.__dict__["_RTCRtpReceiver__rtcp_ssrc"]
        # aiortc sends a REMB for every packet while its detector says
        # "overusing" (a loaded recorder: one RTCP packet per RTP packet); a
        # few a second tell the sender as much.
        if rtcp_ssrc is None or remb is None or arrival_ms - self.remb_at < REMB_MIN_GAP_MS:
            return
        self.remb_at = arrival_ms
        fci = pack_remb_fci(*remb)
        self._spawn(
            receiver._send_rtcp(
                RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci)
            )
        )

    def _bookkeeping(self, packet: Rtp, rtx: bool, arrival_ms: int) -> None:
        # What aiortc's _handle_rtp_packet does before it depayloads.
        if self.estimator is not None:
            self._estimate(packet, arrival_ms)
        ssrc = packet.ssrc
        # aiortc notes the time of every packet; its readers (PLI targets, the
        # sources of the last 10 s) need it to the second.
        if arrival_ms - self.active_at.get(ssrc, -ACTIVE_SSRC_EVERY_MS) >= ACTIVE_SSRC_EVERY_MS:
            self.active_at[ssrc] = arrival_ms
            self.active_ssrc[ssrc] = clock.current_datetime()
        stats = self.remote_streams.get(ssrc)
        if stats is None:
            codec = self.codecs[packet.payload_type]
            stats = self.remote_streams[ssrc] = rtcrtpreceiver.StreamStatistics(codec.clockRate)
        seq = packet.sequence_number
        last = stats.max_seq
        if last is not None and seq == (last + 1) & 0xFFFF:
            next_in_order(stats, seq, packet.timestamp)
        else:
            stats.add(cast(Any, packet))  # reads sequence_number and timestamp
        nack = self.nack
        if nack is None:
            return
        if rtx:
            original = self.rtx_ssrc.get(ssrc)
            if original is None or len(packet.payload) < 2:
                return
            ssrc = original
            packet.ssrc = original
            seq = packet.sequence_number = int.from_bytes(packet.payload[:2], "big")
        last = nack.max_seq
        if not rtx and last is not None and seq == (last + 1) & 0xFFFF:
            # The next packet, as nearly every one is: what aiortc's
            # ``NackGenerator.add`` does for it (nothing goes missing; its
            # truncation has nothing to do without missing numbers).
            nack.max_seq = seq
            if nack.missing:
                nack.truncate()
            missed = False
        else:
            missed = nack.add(packet)
            if last is None and not rtx and not self.audio:
                missed = self._ask_for_start(packet) or missed
        asked = self.nack_asked
        self.media_ssrc = ssrc
        if missed:
            for missing in nack.missing:
                asked.setdefault(missing, arrival_ms)
        elif seq in asked:
            # A retransmission (or a late packet) came: how long a NACK takes
            # to be answered sets how long to wait before asking again.
            sample = arrival_ms - asked.pop(seq)
            self.nack_rtt_ms += (sample - self.nack_rtt_ms) / 8
            self.repaired_at.append(arrival_ms)
            self.repair_ms.append(sample)
            self._hold = None
            return
        elif not nack.missing or arrival_ms - self.nack_at < self._nack_retry_ms():
            return
        self._ask(arrival_ms)

    def _ask_for_start(self, packet: Rtp) -> bool:
        """The leg's first video packet: if it does not begin a keyframe, ask
        for the packets before it (whether any were lost is unknown).

        aiortc's NACK generator starts at the first packet that arrives, so a
        keyframe whose first packets were lost at the start of a leg was never
        asked for: nothing could be written until a keyframe asked for a second
        later (at 10 % loss and 300 ms, 4.8 % of a 20 s recording). The packet
        log waits for ``START_SLACK`` packets before the first; those are asked
        for. A browser ignores a request for a packet it never sent.
        """
        codec = self.codecs.get(packet.payload_type)
        if codec is None or starts_keyframe(codec.mimeType, packet.payload):
            return False
        seq = packet.sequence_number
        self.nack.missing.update((seq - back) & 0xFFFF for back in range(1, START_SLACK + 1))
        return True

    def ask_again(self, now_ms: int) -> None:
        """Ask again for what is still missing, if a retry is due (no packet
        needs to arrive: a leg being drained at its end receives none)."""
        if self.nack is not None and self.nack.missing:
            if now_ms - self.nack_at >= self._nack_retry_ms():
                self._ask(now_ms)

    def ask_after(self, seq: int, count: int, now_ms: int) -> None:
        """Ask for the ``count`` packets after ``seq``, whether or not they were sent.

        For the frame a leg's end came in the middle of: its last packets, if
        lost, are revealed by no later packet (the page sends nothing new). A
        browser ignores a request for a packet it never sent, and one sent
        after the end is not kept (``Leg.keep``).
        """
        nack = self.nack
        if nack is None:
            return
        wanted = [(seq + ahead) & 0xFFFF for ahead in range(1, count + 1)]
        nack.missing.update(wanted)
        for missing in wanted:
            self.nack_asked.setdefault(missing, now_ms)
        self._ask(now_ms)

    def outstanding(self, up_to: int | None) -> int:
        """How many packets up to sequence number ``up_to`` (None: any) are still asked for."""
        if self.nack is None:
            return 0
        missing = self.nack.missing
        if up_to is None:
            return len(missing)
        return sum(1 for seq in missing if (up_to - seq) & 0xFFFF < 0x8000)

    def _ask(self, now_ms: int) -> None:
        # aiortc asks again for what is missing only when a new packet goes
        # missing; a lost retransmission then held the frame (and the relayed
        # picture) until the next loss. Ask again every round trip and a half,
        # as libwebrtc does, and give up after NACK_GIVE_UP_MS.
        nack = self.nack
        asked = self.nack_asked
        for missing in [m for m, first in asked.items() if now_ms - first > NACK_GIVE_UP_MS]:
            del asked[missing]
            nack.missing.discard(missing)
        for missing in [m for m in asked if m not in nack.missing]:
            del asked[missing]  # truncated by aiortc
        if nack.missing and self.media_ssrc is not None:
            self.nack_at = now_ms
            self._spawn(self.receiver._send_rtcp_nack(self.media_ssrc, sorted(nack.missing)))

    def hold_ms(self, now_ms: int) -> int:
        """How long a viewer should hold this source's picture (ms; 0: not at all).

        While the source's packets need retransmissions (the last
        ``HOLD_REPAIRS`` came within ``HOLD_QUIET_MS``), a frame waiting for
        one is late by the time from the loss showing to the retransmission
        coming: the hold is what nine in ten of the last ``HOLD_SAMPLES``
        took, and a margin, in steps (``hold.hold_for``; the recorder
        bounds it). A retransmission lost too takes another round trip and a
        half; holding for those as well would put every frame that much
        later. Packets ULPFEC rebuilt need no round trip and count not.
        """
        repaired = self.repaired_at
        if len(repaired) < HOLD_REPAIRS or now_ms - repaired[0] > HOLD_QUIET_MS:
            return 0
        if self._hold is None:
            self._hold = hold_for(self.repair_ms)
        return self._hold

    def _nack_retry_ms(self) -> float:
        return min(max(1.5 * self.nack_rtt_ms, NACK_RETRY_MIN_MS), NACK_RETRY_MAX_MS)
