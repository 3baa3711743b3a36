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
configured addresses). The lean receive path (``media/tap.py``) and the
cheaper bookkeeping it feeds (``media/speedups.py``) reach further in; ``check``
verifies what they use, as the relay's packet forwarder does for the sender
(``media/forward.py``).

Checked against aiortc 1.16 and aioice 0.10-0.13 (pyproject pins aiortc to
>=1.16,<1.17). ``tests/media/test_seam.py`` fails loudly if any of this moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    clock,
    jitterbuffer,
)

from media.errors import SeamBroken

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
        and hasattr(nack, "max_seq")
        and "truncate" in rtcrtpreceiver.NackGenerator.add.__code__.co_names
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
    # media/early.py: the leg's keys and receivers before the handshake's end.
    if "_setup_srtp" not in RTCDtlsTransport.start.__code__.co_names or not all(
        hasattr(rtcdtlstransport, name)
        for name in ("X509_DIGEST_ALGORITHMS", "certificate_digest", "State")
    ):
        raise SeamBroken("RTCDtlsTransport no longer sets SRTP up as media/early.py expects")
    if "_RTCRtpReceiver__started" not in RTCRtpReceiver.receive.__code__.co_names:
        raise SeamBroken("RTCRtpReceiver.receive no longer starts once only")
    if not callable(getattr(aiortc.RTCPeerConnection, "_RTCPeerConnection__remoteRtp", None)):
        raise SeamBroken("RTCPeerConnection.__remoteRtp is gone (early receivers need it)")
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


def current_ms() -> int:
    """aiortc's ``clock.current_ms`` (milliseconds since the NTP epoch), without
    building two datetimes for every packet."""
    return int(time.time() * 1000) + NTP_TO_UNIX_MS


NTP_TO_UNIX_MS = 2_208_988_800_000


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
