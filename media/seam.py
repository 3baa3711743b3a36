"""The one place that reaches into aiortc's and aioice's private parts.

aiortc has no public API for *encoded* frames on the receiving side (aiortc
issues #55, #449, #984). Its receiver hands each complete frame from the jitter
buffer to a thread that calls the module-global ``get_decoder(codec)`` and queues
whatever ``decode()`` returns onto the track. Replacing that lookup with a
"decoder" that returns the encoded bytes makes ``track.recv()`` yield
``EncodedFrame``s: nothing is decoded or re-encoded.

Also private, and also here: the audio receiver's jitter buffer (replaced by
one that hands Opus packets on as they arrive), the sender's keyframe hook (the relay forwards a
viewer's PLI to the source), the receiver's PLI sender (aiortc sends no keyframe
request when nothing decodes), the negotiated codecs of a transceiver, and
aioice's host-address lookup (it skips 127.0.0.1; the recorder must gather on
configured addresses), and the lean receive path (``RtpTap``): decrypted RTP
taken off the ICE connection before aiortc's per-packet coroutines, jitter
buffer and decoder thread, while aiortc's own NACK generator, receive
statistics and REMB estimator are fed as aiortc feeds them.

Checked against aiortc 1.16 and aioice 0.10-0.13 (pyproject pins aiortc to
>=1.16,<1.17). ``tests/media/test_seam.py`` fails loudly if any of this moves.
"""

from __future__ import annotations

import asyncio
import collections
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aioice.ice
import aiortc
import aiortc.rate
import aiortc.rtcdtlstransport as rtcdtlstransport
import aiortc.rtcrtpreceiver as rtcrtpreceiver
import aiortc.rtp
import aiortc.utils
import pylibsrtp
import pylibsrtp._binding as srtp_binding  # type: ignore[import-not-found]  # cffi, no stubs
from aiortc import (
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    clock,
    jitterbuffer,
)
from aiortc.codecs import is_rtx
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci
from aiortc.utils import uint16_add, uint16_gt

from media import twcc
from media.errors import SeamBroken
from media.twcc import TransportFeedback

TESTED_AIORTC = ("1.16.",)


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded frame as it left aiortc's jitter buffer.

    ``timestamp`` is in the codec clock (90 kHz video, 48 kHz Opus), re-based by
    aiortc to start at 0 for each track; ``arrival`` is ``time.monotonic()`` when
    the frame was handed over, which places the track on the recording's clock.
    """

    data: bytes
    timestamp: int
    codec: str
    kind: str
    clock_rate: int
    keyframe: bool
    arrival: float


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether an encoded frame can be decoded on its own.

    VP8: bit 0 of the first byte is 0 on key frames. H.264 (Annex-B, as aiortc
    depayloads it): the access unit holds an IDR slice (NAL type 5).
    """
    if not data:
        return False
    if codec == "vp8":
        return data[0] & 1 == 0
    if codec == "h264":
        i, n = 0, len(data)
        while True:
            i = data.find(b"\x00\x00\x01", i)
            if i < 0 or i + 3 >= n:
                return False
            if data[i + 3] & 0x1F == 5:
                return True
            i += 3
    return True  # audio: every Opus packet stands alone


class PassthroughDecoder:
    """Stands where aiortc expects a decoder and hands frames on still encoded."""

    def __init__(self, codec: Any) -> None:
        self.codec = codec.name.lower()
        self.kind = codec.mimeType.split("/")[0]
        self.clock_rate = int(codec.clockRate)

    def decode(self, encoded_frame: Any) -> list[EncodedFrame]:
        """Called on aiortc's decoder thread with a ``JitterFrame``."""
        data = bytes(encoded_frame.data)
        return [
            EncodedFrame(
                data=data,
                timestamp=int(encoded_frame.timestamp),
                codec=self.codec,
                kind=self.kind,
                clock_rate=self.clock_rate,
                keyframe=is_keyframe(self.codec, data),
                arrival=time.monotonic(),
            )
        ]


_original_get_decoder: Callable[[Any], Any] | None = None


def check() -> None:
    """Raise ``SeamBroken`` unless aiortc and aioice still look as this module expects."""
    version = getattr(aiortc, "__version__", "")
    if not version.startswith(TESTED_AIORTC):
        raise SeamBroken(f"aiortc {version} is not a tested version ({TESTED_AIORTC})")
    worker = getattr(rtcrtpreceiver, "decoder_worker", None)
    if worker is None or "get_decoder" not in worker.__code__.co_names:
        raise SeamBroken("aiortc's decoder_worker no longer looks up get_decoder")
    if not callable(getattr(rtcrtpreceiver, "get_decoder", None)):
        raise SeamBroken("aiortc.rtcrtpreceiver.get_decoder is gone")
    if "_RTCRtpSender__encoder" not in RTCRtpSender._next_encoded_frame.__code__.co_names:
        raise SeamBroken("RTCRtpSender no longer keeps its encoder as __encoder")
    if "_RTCRtpReceiver__jitter_buffer" not in RTCRtpReceiver._handle_rtp_packet.__code__.co_names:
        raise SeamBroken("RTCRtpReceiver no longer keeps its jitter buffer as __jitter_buffer")
    if not hasattr(RTCRtpReceiver, "_send_rtcp_pli"):
        raise SeamBroken("RTCRtpReceiver._send_rtcp_pli is gone")
    handler = getattr(RTCRtpSender, "_handle_rtcp_packet", None)
    if handler is None or "_send_keyframe" not in handler.__code__.co_names:
        raise SeamBroken("RTCRtpSender no longer asks _send_keyframe on a PLI")
    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        raise SeamBroken("aioice.ice.get_host_addresses is gone")
    handle = RTCRtpReceiver._handle_rtp_packet.__code__.co_names
    for name in _RECEIVER_PARTS:
        if f"_RTCRtpReceiver__{name}" not in handle:
            raise SeamBroken(f"RTCRtpReceiver._handle_rtp_packet no longer uses __{name}")
    for name in ("_rx_srtp", "_rtp_router", "_rtp_header_extensions_map"):
        if name not in RTCDtlsTransport._recv_next.__code__.co_names + (
            RTCDtlsTransport._handle_rtp_data.__code__.co_names
        ):
            raise SeamBroken(f"RTCDtlsTransport no longer receives RTP through {name}")
    if "protect_rtcp" not in RTCDtlsTransport._send_rtp.__code__.co_names:
        raise SeamBroken("RTCDtlsTransport._send_rtp no longer protects RTCP (transport feedback)")
    received = aioice.ice.StunProtocol.datagram_received.__code__.co_names
    if "data_received" not in received or "local_candidate" not in received:
        raise SeamBroken("aioice's StunProtocol no longer hands data to data_received")
    if "_protocols" not in aioice.ice.Connection.close.__code__.co_names:
        raise SeamBroken("aioice's Connection no longer keeps its _protocols")
    stock = aiortc.rate.RemoteBitrateEstimator()
    if not (
        hasattr(stock.incoming_bitrate, "_window_size")
        and hasattr(stock.incoming_bitrate, "_scale")
        and isinstance(getattr(stock.estimator, "ts_delta_hist", None), list)
        and "update_min_frame_period" in aiortc.rate.OveruseEstimator.update.__code__.co_names
        and hasattr(aiortc.rate, "MIN_FRAME_PERIOD_HISTORY_LENGTH")
    ):
        raise SeamBroken(
            "aiortc's RemoteBitrateEstimator no longer looks as speed_up_estimator expects"
        )
    if abs(current_ms() - clock.current_ms()) > 1000:
        raise SeamBroken("aiortc's clock.current_ms is no longer NTP-epoch milliseconds")
    if not hasattr(RTCRtpReceiver, "_send_rtcp_nack"):
        raise SeamBroken("RTCRtpReceiver._send_rtcp_nack is gone")
    ids = getattr(aiortc.rtp.HeaderExtensionsMap(), "_HeaderExtensionsMap__ids", None)
    if ids is None or not hasattr(ids, "abs_send_time"):
        raise SeamBroken("aiortc's HeaderExtensionsMap no longer keeps __ids.abs_send_time")
    nack = rtcrtpreceiver.NackGenerator()
    if not (
        isinstance(getattr(nack, "missing", None), set)
        and "truncate" in rtcrtpreceiver.NackGenerator.add.__code__.co_names
        and hasattr(rtcrtpreceiver, "RTP_HISTORY_SIZE")
    ):
        raise SeamBroken("aiortc's NackGenerator no longer looks as speed_up_nack expects")
    session = pylibsrtp.Session()
    if not (
        isinstance(getattr(session, "_cdata", None), srtp_binding.ffi.CData)
        and hasattr(session, "_buffer")
        and hasattr(session, "_srtp")
        and callable(getattr(srtp_binding.lib, "srtp_unprotect", None))
    ):
        raise SeamBroken("pylibsrtp's Session no longer keeps _cdata, _buffer and _srtp")
    if "ssrc_table" not in rtcdtlstransport.RtpRouter.route_rtp.__code__.co_names or (
        "payload_type" not in rtcdtlstransport.RtpRouter.route_rtp.__code__.co_names
    ):
        raise SeamBroken("aiortc's RtpRouter no longer routes by SSRC and payload type alone")


def install_passthrough() -> None:
    """Make every aiortc receiver in this process yield encoded frames.

    The server never decodes media, so this is process-wide on purpose.
    Idempotent.
    """
    global _original_get_decoder
    check()
    if _original_get_decoder is None:
        _original_get_decoder = getattr(rtcrtpreceiver, "get_decoder")  # noqa: B009
        setattr(rtcrtpreceiver, "get_decoder", PassthroughDecoder)  # noqa: B010


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Make aioice gather host candidates on exactly ``addresses`` (if any given)."""
    check()
    if not addresses:
        return
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send an RTCP PLI for each SSRC the receiver has heard; False if none yet."""
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return bool(sources)


# What ``RtpTap`` feeds on aiortc's receiver, as ``_handle_rtp_packet`` does.
_RECEIVER_PARTS = (
    "active_ssrc",
    "codecs",
    "remote_streams",
    "rtx_ssrc",
    "nack_generator",
    "remote_bitrate_estimator",
    "rtcp_ssrc",
)

# A packet the tap keeps: (arrival monotonic seconds, audio?, marker?, seq, RTP timestamp, payload).
KeptPacket = tuple[float, bool, bool, int, int, bytes]

# REMB feedback is sent at most this often (ms).
REMB_MIN_GAP_MS = 200
# A missing packet is asked for again every 1.5 round trips (within these
# bounds), for at most NACK_GIVE_UP_MS (as long as the packet log waits for a hole).
NACK_RETRY_MIN_MS = 40
NACK_RETRY_MAX_MS = 400
NACK_GIVE_UP_MS = 2000
# The receiver's list of active sources (PLI targets) is refreshed this often (ms).
ACTIVE_SSRC_EVERY_MS = 1000
# RTP held while the DTLS handshake finishes (a second of 1 Mbit/s video).
EARLY_PACKETS = 200
_HEADER = struct.Struct("!BBHII")


class _Rtp:
    """The parts of an RTP packet the tap and aiortc's bookkeeping read.

    Lighter than aiortc's ``RtpPacket.parse``, which decodes every header
    extension of every packet; only abs-send-time (for REMB) is read here.
    """

    __slots__ = (
        "abs_send_time",
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
        if len(data) < 12:
            raise ValueError("RTP packet too short")
        first, m_pt, self.sequence_number, self.timestamp, self.ssrc = _HEADER.unpack_from(data)
        if first >> 6 != 2:
            raise ValueError("not RTP version 2")
        self.marker = m_pt >> 7
        self.payload_type = m_pt & 0x7F
        pos = 12 + 4 * (first & 0x0F)
        self.ext: tuple[int, bytes] | None = None
        if first & 0x10:
            if len(data) < pos + 4:
                raise ValueError("RTP extension truncated")
            profile, length = struct.unpack_from("!HH", data, pos)
            end = pos + 4 + 4 * length
            self.ext = (profile, data[pos + 4 : end])
            pos = end
        self.abs_send_time: int | None = None
        if first & 0x20:
            pad = data[-1]
            if not pad or pad > len(data) - pos:
                raise ValueError("RTP padding invalid")
            self.padding_size = pad
            self.payload = data[pos:-pad]
        else:
            self.padding_size = 0
            self.payload = data[pos:]
        if len(data) < pos:
            raise ValueError("RTP packet truncated")


# An RFC 8285 one-byte extension header for each id with 3 bytes of data (abs-send-time).
_ABS_FIRST = [bytes([(xid << 4) | 2]) for xid in range(16)]


class _RateCounter:
    """aiortc's ``rate.RateCounter`` (bytes received in the last window, by the
    millisecond) with the same results, at a cost per packet rather than per
    elapsed millisecond: aiortc's steps its 1 ms buckets one by one, twice for
    every packet, which was a fifth of the REMB estimator's cost."""

    def __init__(self, window_size: int, scale: int) -> None:
        self._window = window_size
        self._scale = scale
        self.reset()

    def reset(self) -> None:
        """Forget everything (as aiortc's ``reset``)."""
        self._entries: collections.deque[tuple[int, int]] = collections.deque()
        self._origin_ms: int | None = None
        self._count = 0
        self._value = 0

    def _erase_old(self, now_ms: int) -> None:
        assert self._origin_ms is not None  # noqa: S101 - set by the first add
        new_origin = now_ms - self._window + 1
        if self._origin_ms < new_origin:
            entries = self._entries
            while entries and entries[0][0] < new_origin:
                self._value -= entries.popleft()[1]
                self._count -= 1
            self._origin_ms = new_origin

    def add(self, value: int, now_ms: int) -> None:
        """Count ``value`` bytes received at ``now_ms``."""
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        self._entries.append((now_ms, value))
        self._count += 1
        self._value += value

    def rate(self, now_ms: int) -> int | None:
        """Bits per second over the window (None before two milliseconds of data)."""
        if self._origin_ms is not None:
            self._erase_old(now_ms)
            active_window_size = now_ms - self._origin_ms + 1
            if self._count > 0 and active_window_size > 1:
                return round(self._scale * self._value / active_window_size)
        return None


def speed_up_estimator(estimator: Any) -> None:
    """Make a fresh aiortc ``RemoteBitrateEstimator`` cheaper, with the same results.

    Its rate counter becomes ``_RateCounter``, and its overuse estimator's
    minimum over the last 60 frame periods is taken with ``min`` instead of a
    loop of 60 calls a frame. ``tests/media/test_seam.py`` feeds both versions
    the same packets and compares every estimate.
    """
    counter = estimator.incoming_bitrate
    estimator.incoming_bitrate = _RateCounter(counter._window_size, counter._scale)
    overuse = estimator.estimator
    history: list[float] = overuse.ts_delta_hist
    keep = aiortc.rate.MIN_FRAME_PERIOD_HISTORY_LENGTH

    def update_min_frame_period(ts_delta: float) -> float:
        if len(history) >= keep:
            history.pop(0)
        least = min(history) if history else ts_delta
        history.append(ts_delta)
        return least if least < ts_delta else ts_delta

    overuse.update_min_frame_period = update_min_frame_period
    estimator.add = _fused_add(estimator)


def _fused_add(estimator: Any) -> Callable[[int, int, int, int], tuple[int, list[int]] | None]:
    """aiortc's ``RemoteBitrateEstimator.add`` with its inter-arrival grouping
    (``InterArrival.compute_deltas``) written out in line: the same statements
    in the same order on the same objects, a handful of calls fewer per packet."""
    rate = aiortc.rate
    counter = estimator.incoming_bitrate
    inter = estimator.inter_arrival
    overuse, detector, control = estimator.estimator, estimator.detector, estimator.rate_control
    ssrcs: dict[int, int] = estimator.ssrcs
    group_length, to_ms = inter.group_length, inter.timestamp_to_ms
    group_type, burst_ms, timestamp_to_ms = (
        rate.TimestampGroup,
        rate.BURST_DELTA_THRESHOLD_MS,
        rate.TIMESTAMP_TO_MS,
    )
    overusing = rate.BandwidthUsage.OVERUSING
    uint32_gt = aiortc.utils.uint32_gt

    def add(
        arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        timestamp = abs_send_time << 8
        ssrcs[ssrc] = arrival_time_ms
        if counter.rate(arrival_time_ms) is not None:
            estimator.incoming_bitrate_initialized = True
        elif estimator.incoming_bitrate_initialized:
            counter.reset()
            estimator.incoming_bitrate_initialized = False
        counter.add(payload_size, arrival_time_ms)

        # InterArrival.compute_deltas
        delta: tuple[int, int, int] | None = None
        current = inter.current_group
        in_order = True
        if current is None:
            current = inter.current_group = group_type(timestamp)
        elif (timestamp - current.first_timestamp) & 0xFFFFFFFF >= 0x80000000:
            in_order = False  # out of order: not counted in any group
        else:
            timestamp_delta_ms = round(to_ms * ((timestamp - current.last_timestamp) & 0xFFFFFFFF))
            arrival_time_delta = arrival_time_ms - current.arrival_time
            burst = timestamp_delta_ms == 0 or (
                arrival_time_delta - timestamp_delta_ms < 0 and arrival_time_delta <= burst_ms
            )
            if not burst and (timestamp - current.first_timestamp) & 0xFFFFFFFF > group_length:
                previous = inter.previous_group
                if previous is not None:
                    delta = (
                        (current.last_timestamp - previous.last_timestamp) & 0xFFFFFFFF,
                        current.arrival_time - previous.arrival_time,
                        current.size - previous.size,
                    )
                inter.previous_group = current
                current = inter.current_group = group_type(timestamp=timestamp)
            elif uint32_gt(timestamp, current.last_timestamp):
                current.last_timestamp = timestamp
        if in_order:
            current.size += payload_size
            current.arrival_time = arrival_time_ms

        if delta is not None:
            delta_ms = delta[0] * timestamp_to_ms
            overuse.update(delta[1], delta_ms, delta[2], detector.state(), arrival_time_ms)
            detector.detect(overuse.offset(), delta_ms, overuse.num_of_deltas(), arrival_time_ms)

        last = estimator.last_update_ms
        if (
            last is None
            or arrival_time_ms - last > control.feedback_interval()
            or detector.state() == overusing
        ):
            target_bitrate = control.update(
                detector.state(), counter.rate(arrival_time_ms), arrival_time_ms
            )
            if target_bitrate is not None:
                estimator.last_update_ms = arrival_time_ms
                return target_bitrate, list(ssrcs.keys())
        return None

    return add


def speed_up_nack(nack: Any) -> None:
    """Make an aiortc ``NackGenerator`` cheaper, with the same missing set after every packet.

    aiortc's ``truncate`` (called for every packet) compares every missing
    sequence number with the newest less ``RTP_HISTORY_SIZE``: with a few dozen
    missing (a loaded receiver, a lossy uplink) that was the largest part of a
    packet's bookkeeping. Nothing can expire before the oldest missing number
    does, and numbers become missing only newer than all others, so the full
    pass runs only once the oldest one seen by the last pass has expired (or when
    that is unknown). ``tests/media/test_seam.py`` compares it with aiortc's.
    """
    full = type(nack).truncate.__get__(nack)
    history: int = getattr(rtcrtpreceiver, "RTP_HISTORY_SIZE")  # noqa: B009 - not re-exported
    oldest: list[int | None] = [None]  # the oldest missing after the last full pass

    def truncate() -> None:
        missing = nack.missing
        if not missing or nack.max_seq is None:
            oldest[0] = None
            return
        known = oldest[0]
        if known is not None and not uint16_gt(uint16_add(nack.max_seq, -history), known):
            return  # nothing has expired yet
        full()
        newest = nack.max_seq
        oldest[0] = max(missing, key=lambda seq: (newest - seq) & 0xFFFF) if missing else None

    nack.truncate = truncate


def _unprotector(session: Any) -> Callable[[bytes], bytes]:
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


class _Lean:
    """One receiver's share of the tap: aiortc's bookkeeping without its frame path."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        kind: str,
        keep: Callable[[KeptPacket], None],
        relaying: Callable[[], bool],
        extensions: Any,
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
            speed_up_nack(self.nack)
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

    def handle(self, packet: _Rtp, plain: bytes, arrival_ms: int) -> None:
        receiver = self.receiver
        if not receiver._enabled:
            return
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
                (time.monotonic(), self.audio, packet.marker == 1, seq, packet.timestamp, payload)
            )

    def _abs_send_time(self, packet: _Rtp) -> int | None:
        if packet.ext is None:
            return None
        profile, value = packet.ext
        wanted = self.extensions.__dict__["_HeaderExtensionsMap__ids"].abs_send_time
        if profile == 0xBEDE and wanted:
            if wanted < 15 and len(value) >= 4 and value[:1] == _ABS_FIRST[wanted]:
                # first among the extensions, as browsers send it
                return int.from_bytes(value[1:4], "big")
            raw = twcc.one_byte_extension(value, wanted)
            return int.from_bytes(raw, "big") if raw is not None and len(raw) == 3 else None
        value_time: int | None = self.extensions.get(profile, value).abs_send_time
        return value_time

    def _bookkeeping(self, packet: _Rtp, rtx: bool, arrival_ms: int) -> None:
        # What aiortc's _handle_rtp_packet does before it depayloads.
        receiver = self.receiver
        if self.estimator is not None:
            abs_send_time = self._abs_send_time(packet)
            if abs_send_time is not None:
                size = len(packet.payload) + packet.padding_size
                # (arrival, abs-send-time, size, SSRC): positional, as it is called per packet
                remb = self.estimator.add(arrival_ms, abs_send_time, size, packet.ssrc)
                rtcp_ssrc = receiver.__dict__["_RTCRtpReceiver__rtcp_ssrc"]
                # aiortc sends a REMB for every packet while its detector says
                # "overusing" (a loaded recorder: one RTCP packet per RTP
                # packet); a few a second tell the sender as much.
                if (
                    rtcp_ssrc is not None
                    and remb is not None
                    and arrival_ms - self.remb_at >= REMB_MIN_GAP_MS
                ):
                    self.remb_at = arrival_ms
                    fci = pack_remb_fci(*remb)
                    self._spawn(
                        receiver._send_rtcp(
                            RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci)
                        )
                    )
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
        stats.add(cast(Any, packet))  # reads sequence_number and timestamp
        if self.nack is None:
            return
        if rtx:
            original = self.rtx_ssrc.get(ssrc)
            if original is None or len(packet.payload) < 2:
                return
            ssrc = original
            packet.ssrc = original
            packet.sequence_number = int.from_bytes(packet.payload[:2], "big")
        nack = self.nack
        asked = self.nack_asked
        seq = packet.sequence_number
        if nack.add(packet):
            for missing in nack.missing:
                asked.setdefault(missing, arrival_ms)
        elif seq in asked:
            # A retransmission (or a late packet) came: how long a NACK takes
            # to be answered sets how long to wait before asking again.
            sample = arrival_ms - asked.pop(seq)
            self.nack_rtt_ms += (sample - self.nack_rtt_ms) / 8
            return
        elif not nack.missing or arrival_ms - self.nack_at < self._nack_retry_ms():
            return
        # aiortc asks again for what is missing only when a new packet goes
        # missing; a lost retransmission then held the frame (and the relayed
        # picture) until the next loss. Ask again every round trip and a half,
        # as libwebrtc does, and give up after NACK_GIVE_UP_MS.
        for missing in [m for m, first in asked.items() if arrival_ms - first > NACK_GIVE_UP_MS]:
            del asked[missing]
            nack.missing.discard(missing)
        for missing in [m for m in asked if m not in nack.missing]:
            del asked[missing]  # truncated by aiortc
        if nack.missing:
            self.nack_at = arrival_ms
            self._spawn(receiver._send_rtcp_nack(ssrc, sorted(nack.missing)))

    def _nack_retry_ms(self) -> float:
        return min(max(1.5 * self.nack_rtt_ms, NACK_RETRY_MIN_MS), NACK_RETRY_MAX_MS)


def _never() -> bool:
    return False


def current_ms() -> int:
    """aiortc's ``clock.current_ms`` (milliseconds since the NTP epoch), without
    building two datetimes for every packet."""
    return int(time.time() * 1000) + _NTP_TO_UNIX_MS


_NTP_TO_UNIX_MS = 2_208_988_800_000


# Datagrams read from one socket per wake-up of the event loop, at most (the
# loop's other work, RTCP and timers, must not starve behind a flood).
DRAIN_MAX = 32
_MAX_DATAGRAM = 1 << 16


def _straight_to(protocol: Any, data_received: Callable[[bytes, int], None]) -> None:
    original = protocol.datagram_received
    component = protocol.local_candidate.component
    # asyncio reads one datagram per wake-up of the loop (a poll, a pass of the
    # loop, a callback): most of what an RTP packet cost beside its own work.
    # A browser's pacer sends a frame's packets together, so once woken the
    # socket is drained here, on a duplicate of its descriptor (the same
    # socket; asyncio keeps its own and its reader, and closes both).
    sock = protocol.transport.get_extra_info("socket").dup()
    recvfrom = sock.recvfrom
    lost = protocol.connection_lost

    def datagram_received(data: bytes, addr: Any) -> None:
        for _ in range(DRAIN_MAX):
            if data and 127 < data[0] < 192:
                data_received(data, component)
            else:
                original(data, addr)
            try:
                data, addr = recvfrom(_MAX_DATAGRAM)
            except OSError:  # BlockingIOError: drained (other errors: asyncio's reader sees them)
                return

    def connection_lost(exc: Exception | None) -> None:
        sock.close()
        lost(exc)

    protocol.datagram_received = datagram_received
    protocol.connection_lost = connection_lost


class RtpTap:
    """Takes a receive-only peer connection's RTP before aiortc's per-packet path.

    aiortc hands every datagram through an asyncio queue to a coroutine chain
    (DTLS transport, RTP router, receiver), re-assembles frames in a jitter
    buffer and passes each frame to a per-receiver decoder thread and back:
    profiled, most of a recorded stream's CPU. The tap replaces the ICE
    connection's ``data_received`` (called synchronously from the UDP
    protocol): SRTP packets are decrypted and their headers read at once,
    aiortc's NACK generator, receive statistics (its RTCP receiver reports),
    active sources (PLI targets) and REMB estimator are fed as
    ``_handle_rtp_packet`` feeds them, and the packet's payload is handed to
    ``keep``. Frames are put together later, off the loop
    (``media/packets.py``). Everything else (STUN, DTLS, RTCP) takes aiortc's
    usual way. While ``relaying()`` is true a packet also goes through aiortc's
    whole receive path, so the relay's viewers get frames as before.
    """

    def __init__(self) -> None:
        self.leans: dict[Any, _Lean] = {}
        self.feedback: TransportFeedback | None = None
        self.taps: list[tuple[Any, Callable[[bytes, int], None]]] = []

    def attach(
        self,
        pc: RTCPeerConnection,
        keep: Callable[[KeptPacket], None],
        relaying: Callable[[], bool],
        feedback: TransportFeedback | None = None,
        relay_kinds: tuple[str, ...] = ("audio", "video"),
    ) -> None:
        """Tap ``pc`` (after ``setRemoteDescription``): its receivers' packets go to ``keep``.

        With ``feedback``, every packet's arrival is noted for transport-wide
        feedback (``send_feedback``) and aiortc's REMB is turned off. Only the
        receivers of ``relay_kinds`` take aiortc's whole path while relaying.
        """
        check()
        self.feedback = feedback
        transports: set[RTCDtlsTransport] = set()
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            if feedback is not None:
                receiver.__dict__["_RTCRtpReceiver__remote_bitrate_estimator"] = None
            extensions = receiver.transport._rtp_header_extensions_map
            kind = transceiver.kind
            self.leans[receiver] = _Lean(
                receiver, kind, keep, relaying if kind in relay_kinds else _never, extensions
            )
            transports.add(receiver.transport)
        for dtls in transports:
            self._divert(dtls)

    async def send_feedback(self) -> None:
        """Send transport-wide feedback every ``twcc.INTERVAL`` until the connection ends."""
        feedback = self.feedback
        if feedback is None or not self.leans:
            return
        receiver = next(iter(self.leans))
        dtls = receiver.transport
        while dtls.state not in ("closed", "failed"):
            await asyncio.sleep(twcc.INTERVAL)
            ssrc = receiver.__dict__["_RTCRtpReceiver__rtcp_ssrc"]
            if ssrc is None or dtls.state != "connected":
                continue
            for packet in feedback.build(ssrc):
                try:
                    await dtls._send_rtp(packet)
                except ConnectionError:
                    return

    def _divert(self, dtls: RTCDtlsTransport) -> None:
        connection = dtls.transport._connection
        original = connection.data_received
        leans = self.leans
        router = dtls._rtp_router
        feedback = self.feedback

        # RTP that arrives before this side's DTLS handshake has finished (the
        # far side may finish first and start sending): aiortc queues it and
        # decrypts it after the handshake; here it waits until the keys are known.
        early: list[bytes] = []
        # (SSRC, payload type) -> where aiortc's router sends it; a recording
        # leg is negotiated once, so the router's answer does not change.
        routes: dict[int, _Lean] = {}
        decrypting: list[Any] = [None, None]  # the receive session, its unprotect

        def take(data: bytes, srtp: Any) -> None:
            if decrypting[0] is not srtp:  # the first packet after the handshake
                decrypting[:] = [srtp, _unprotector(srtp)]
            unprotect = decrypting[1]
            try:
                plain = unprotect(data)
                packet = _Rtp(plain)
            except (pylibsrtp.Error, ValueError, struct.error):
                return  # aiortc drops these too
            key = packet.ssrc << 7 | packet.payload_type
            lean = routes.get(key)
            if lean is None:
                receiver: Any = router.route_rtp(cast(Any, packet))  # reads ssrc, payload_type
                lean = leans.get(receiver) if receiver is not None else None
                if lean is None:
                    return
                routes[key] = lean
            if feedback is not None:
                seq = twcc.extension_value(packet.ext, feedback.ext_id)
                if seq is not None:
                    feedback.add(seq, packet.ssrc)
            lean.handle(packet, plain, current_ms())

        def data_received(data: bytes, component: int) -> None:
            if not 127 < data[0] < 192 or 191 < data[1] < 224:
                original(data, component)  # STUN, DTLS, RTCP: aiortc's way
                return
            srtp: Any = dtls._rx_srtp  # None until the handshake is done
            if srtp is None:
                if len(early) < EARLY_PACKETS:
                    early.append(data)
                return
            if early:
                for waiting in early:
                    take(waiting, srtp)
                early.clear()
            take(data, srtp)

        setattr(connection, "data_received", data_received)  # noqa: B010 - this instance
        self.taps.append((connection, data_received))

    def skip_stun_parse(self) -> None:
        """Call after ``setLocalDescription``: RTP skips aioice's STUN parse attempt.

        aioice's UDP protocol tries to parse every datagram as STUN before it
        hands it on (an exception per media packet); RTP and RTCP cannot be
        STUN (RFC 7983: first byte 128-191), so they go straight to the tap.
        """
        for connection, data_received in self.taps:
            for protocol in getattr(connection, "_protocols", []):
                if type(protocol) is aioice.ice.StunProtocol:  # host candidates, not TURN
                    _straight_to(protocol, data_received)


def negotiated_codec(transceiver: RTCRtpTransceiver) -> str | None:
    """The codec the remote side will send on this transceiver (lower case), if known."""
    codecs = getattr(transceiver, "_codecs", None)
    if not codecs:
        return None
    for codec in codecs:
        name = str(codec.mimeType.split("/")[1]).lower()
        if name not in ("rtx", "red", "ulpfec"):
            return name
    return None


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the far end of ``sender`` asks for a keyframe (PLI/FIR).

    aiortc's sender handles a PLI by asking its own encoder for a keyframe
    (``_send_keyframe``), which does nothing for pre-encoded packets; the relay
    forwards the request to the source instead.
    """
    setattr(sender, "_send_keyframe", callback)  # noqa: B010 - the instance, not the class


class OpusPacker:
    """What the relay's audio senders use instead of aiortc's Opus encoder.

    aiortc's ``OpusEncoder`` opens a libopus encoder (and a resampler) when it
    is made, although the relay only ever calls ``pack`` on it with Opus
    packets that are already encoded. This packs the same way (one packet per
    RTP payload, timestamp in the 48 kHz clock) without opening anything.
    """

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        """The packet as one RTP payload, and its timestamp at 48 kHz."""
        return [bytes(packet)], int(packet.pts * packet.time_base * 48000)


def use_packer(sender: RTCRtpSender, kind: str) -> None:
    """Give an audio ``sender`` a pack-only Opus "encoder" (video ones open none)."""
    if kind == "audio":
        setattr(sender, "_RTCRtpSender__encoder", OpusPacker())  # noqa: B010


class ArrivalOrderAudio:
    """Stands where aiortc keeps an audio receiver's jitter buffer: every Opus
    packet is handed on as it arrives.

    aiortc's audio buffer (16 packets, prefetch 4) releases packets only in an
    unbroken sequence: one lost packet holds back the next 15 (320 ms) until the
    buffer overflows. Nothing retransmits audio, so on a lossy uplink that turned
    every loss into a burst, and relayed audio reached the viewers late (22 % of
    it concealed at 5 % loss, against 5 % browser to browser). Opus packets stand
    alone: the recorder writes them and the relay forwards them at once; a
    packet older than the last one handed on (reordered) is dropped.
    """

    capacity = 16

    def __init__(self) -> None:
        self.last: int | None = None

    def add(self, packet: Any) -> tuple[bool, Any]:
        """aiortc's ``JitterBuffer.add``: (send a PLI?, the frame or None)."""
        seq = packet.sequence_number
        if self.last is not None and (seq - self.last) % 65536 >= 32768:
            return False, None  # older than what was handed on
        if seq == self.last:
            return False, None  # a duplicate
        self.last = seq
        return False, jitterbuffer.JitterFrame(data=packet._data, timestamp=packet.timestamp)


def audio_in_arrival_order(receiver: RTCRtpReceiver) -> None:
    """Make an audio ``receiver`` hand on each packet as it arrives (see above)."""
    setattr(receiver, "_RTCRtpReceiver__jitter_buffer", ArrivalOrderAudio())  # noqa: B010
