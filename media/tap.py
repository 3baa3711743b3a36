"""The lean receive path: decrypted RTP taken off the ICE connection as it arrives.

aiortc hands every datagram through an asyncio queue to a coroutine chain (DTLS
transport, RTP router, receiver), re-assembles frames in a jitter buffer and
passes each frame to a per-receiver decoder thread and back: profiled, most of
a recorded stream's CPU. ``RtpTap`` replaces the ICE connection's
``data_received``: SRTP packets are decrypted and their headers read at once,
aiortc's NACK generator (asked again after a lost retransmission), receive
statistics, active sources and REMB estimator (or transport-wide feedback,
``media/twcc.py``) are fed as ``_handle_rtp_packet`` feeds them, and the
payload goes to the recorder (``media/packets.py``); each receiver's share of
that is a ``Lean`` (``media/lean.py``). It reaches into aiortc's private parts;
``seam.check`` verifies them (``tests/media/test_seam.py``).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from typing import Any, cast

import aioice.ice
import pylibsrtp
from aiortc import RTCDtlsTransport, RTCPeerConnection

from media import early as early_keys
from media import twcc
from media.hold import within
from media.lean import Lean
from media.reading import DataReceived, Reading, clock_offset_us
from media.rtp import Rtp, unprotector
from media.seam import NTP_TO_UNIX_MS, KeptPacket, check, current_ms
from media.twcc import TransportFeedback
from media.ulpfec import FecTypes

log = logging.getLogger(__name__)

# RTP held while the DTLS handshake finishes (a second of 1 Mbit/s video).
EARLY_PACKETS = 200
# Held packets on which the keys are tried before the handshake's end
# (``media/early.py``): the first should do.
EARLY_TRIES = 8


def _never() -> bool:
    return False


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

    def __init__(self, reading: Reading) -> None:
        """A tap whose sockets and feedback go through the recorder's ``reading``."""
        self.reading = reading
        self.leans: dict[Any, Lean] = {}
        self.feedback: TransportFeedback | None = None
        self.taps: list[tuple[Any, DataReceived]] = []

    def attach(
        self,
        pc: RTCPeerConnection,
        keep: Callable[[KeptPacket], None],
        relaying: Callable[[], bool],
        feedback: TransportFeedback | None = None,
        relay_kinds: tuple[str, ...] = ("audio", "video"),
        fec: FecTypes | None = None,
    ) -> None:
        """Tap ``pc`` (after ``setRemoteDescription``): its receivers' packets go to ``keep``.

        With ``feedback``, every packet's arrival is noted for transport-wide
        feedback (``send_feedback``) and aiortc's REMB is turned off. Only the
        receivers of ``relay_kinds`` take aiortc's whole path while relaying.
        With ``fec`` (the answer accepts RED and ULPFEC), video comes in RED
        and lost packets are rebuilt from its FEC packets.
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
            self.leans[receiver] = Lean(
                receiver,
                kind,
                keep,
                relaying if kind in relay_kinds else _never,
                extensions,
                fec if kind == "video" else None,
            )
            transports.add(receiver.transport)
        for dtls in transports:
            self._divert(dtls, pc)

    def read_now(self) -> None:
        """Take what the kernel holds for the tapped sockets now (not at the next poll)."""
        self.reading.read_now()

    def fec_counts(self) -> tuple[int, int, int, int] | None:
        """The video's ULPFEC: FEC packets taken, packets rebuilt, rebuilt packets
        whose retransmission came, and of those the ones that differed (None: no RED)."""
        lean = self._video()
        decoder = lean.decoder if lean is not None else None
        if decoder is None:
            return None
        return (decoder.fec_packets, decoder.recovered, decoder.checked, decoder.mismatched)

    def hold_ms(self, now_ms: int) -> int:
        """How long the relay's viewers should hold the video (``Lean.hold_ms``; 0: no video)."""
        lean = self._video()
        return lean.hold_ms(now_ms) if lean is not None else 0

    def repair_ms(self) -> tuple[int, int] | None:
        """The time half and nine in ten of the video's last retransmissions took
        to come (ms; None: none came)."""
        lean = self._video()
        if lean is None or not lean.repair_ms:
            return None
        took = sorted(lean.repair_ms)
        return within(took, 5), within(took, 9)

    def send_queue_ms(self, now: float) -> float | None:
        """How long the video's last packets waited in the sender's pacer
        (``SendQueue.queued_ms``; None: no video packet came lately)."""
        lean = self._video()
        if lean is None or lean.send_queue is None:
            return None
        return lean.send_queue.queued_ms(now)

    def video_high(self) -> int | None:
        """The newest video sequence number received (None: no video yet)."""
        lean = self._video()
        if lean is None or lean.nack is None or lean.nack.max_seq is None:
            return None
        return int(lean.nack.max_seq)

    def outstanding(self, up_to: int | None = None) -> int:
        """Video packets up to ``up_to`` (None: any) still asked for (audio is not)."""
        lean = self._video()
        return lean.outstanding(up_to) if lean is not None else 0

    def _video(self) -> Lean | None:
        """The video receiver's (a leg sends one video track; None: none yet)."""
        return next((lean for lean in self.leans.values() if not lean.audio), None)

    def ask_after(self, seq: int, count: int, now_ms: int) -> None:
        """Ask for the ``count`` video packets after ``seq`` (see ``Lean.ask_after``)."""
        lean = self._video()
        if lean is not None:
            lean.ask_after(seq, count, now_ms)

    def ask_again(self, now_ms: int) -> None:
        """Ask again for what is missing where a retry is due (see ``Lean.ask_again``)."""
        for lean in self.leans.values():
            lean.ask_again(now_ms)

    async def send_feedback(self) -> None:
        """Send transport-wide feedback every ``twcc.INTERVAL`` until the connection ends
        (``Reading.send_feedback``: one timer for every leg of the recorder)."""
        if self.feedback is None or not self.leans:
            return
        await self.reading.send_feedback(self._send_feedback_now)

    async def _send_feedback_now(self) -> bool:
        """Send the feedback due now; False once the connection has ended."""
        feedback = self.feedback
        assert feedback is not None  # noqa: S101 - only registered with feedback
        receiver = next(iter(self.leans))
        dtls = receiver.transport
        if dtls.state in ("closed", "failed"):
            return False
        ssrc = receiver.__dict__["_RTCRtpReceiver__rtcp_ssrc"]
        # (While connecting, only once the keys came early: media/early.py.)
        if ssrc is None or (dtls.state != "connected" and getattr(dtls, "_rx_srtp", None) is None):
            return True
        for packet in feedback.build(ssrc):
            try:
                await dtls._send_rtp(packet)
            except ConnectionError:
                return False
        return True

    def _divert(self, dtls: RTCDtlsTransport, pc: RTCPeerConnection) -> None:
        connection = dtls.transport._connection
        original = connection.data_received
        leans = self.leans
        router = dtls._rtp_router
        feedback = self.feedback
        reading = self.reading

        # RTP that arrives before this side's DTLS handshake has finished (the
        # far side may finish first and start sending): aiortc queues it and
        # decrypts it after the handshake; here it waits until the keys are known,
        # with the time it came. Its transport feedback says that time (the
        # sender's estimator would read the time it was taken as a burst); the
        # rest of the leg takes it as arriving when taken, as before: the packet
        # log's wait for a hole and the NACKs count from then (from the time it
        # came, a hole among held packets would be given up before its
        # retransmission could come).
        early: list[tuple[bytes, int]] = []
        # The keys, known before the handshake's end (``media/early.py``): the
        # receivers start then (aiortc starts them once connected), and what
        # was held goes on once they have.
        tries = [0]
        starting: list[asyncio.Task[None] | None] = [None]
        transceivers = [t for t in pc.getTransceivers() if t.receiver.transport is dtls]

        async def start_receivers() -> None:
            try:
                for transceiver in transceivers:
                    if transceiver.currentDirection in ("recvonly", "sendrecv"):
                        await transceiver.receiver.receive(
                            pc._RTCPeerConnection__remoteRtp(transceiver)  # type: ignore[attr-defined]
                        )
            except Exception:
                log.exception("receivers not started early; aiortc starts them once connected")
            srtp = dtls._rx_srtp
            if srtp is not None:
                take_held(srtp)

        def take_held(srtp: Any) -> None:
            """What was held for the keys, in the order it came."""
            for waiting, came_us in early:
                take(waiting, srtp, None, came_us)
            early.clear()

        def go_early(data: bytes) -> None:
            if tries[0] >= EARLY_TRIES or not transceivers:
                return
            tries[0] += 1
            remotes = getattr(pc, "_RTCPeerConnection__remoteDtls", {})
            remote = remotes.get(transceivers[0])
            try:
                started = remote is not None and early_keys.start(dtls, remote, data)
            except Exception:
                # Only a head start: the handshake's end sets the keys as before.
                log.exception("early DTLS keys failed; the leg waits for the handshake")
                tries[0] = EARLY_TRIES
                return
            if started:
                tries[0] = EARLY_TRIES
                starting[0] = asyncio.ensure_future(start_receivers())

        # (SSRC, payload type) -> where aiortc's router sends it; a recording
        # leg is negotiated once, so the router's answer does not change.
        routes: dict[int, Lean] = {}
        decrypting: list[Any] = [None, None]  # the receive session, its unprotect

        def take(
            data: bytes, srtp: Any, arrival_us: int | None = None, held_us: int | None = None
        ) -> None:
            """``arrival_us``: the wall clock in µs when it came (now if None);
            ``held_us``: when a packet held for the handshake came (its feedback's time)."""
            if decrypting[0] is not srtp:  # the first packet after the handshake
                decrypting[:] = [srtp, unprotector(srtp)]
            unprotect = decrypting[1]
            try:
                plain = unprotect(data)
                packet = Rtp(plain)
            except (pylibsrtp.Error, ValueError, struct.error):
                return  # aiortc drops these too
            key = packet.ssrc << 7 | packet.payload_type
            lean = routes.get(key)
            if lean is None:
                receiver: Any = router.route_rtp(cast(Any, packet))  # reads ssrc, payload_type
                lean = leans.get(receiver) if receiver is not None else None
                if lean is None:
                    # RED is not among aiortc's codecs: its router drops it.
                    lean = next(
                        (x for x in leans.values() if packet.payload_type in x.red_types), None
                    )
                if lean is None:
                    return
                routes[key] = lean
            if arrival_us is None:
                arrival_ms, monotonic_us, arrival = current_ms(), None, None
            else:
                # When the kernel received it (the poller reads every few ms).
                arrival_ms = arrival_us // 1000 + NTP_TO_UNIX_MS
                monotonic_us = arrival_us - reading.offset_us
                arrival = monotonic_us / 1e6
            if feedback is not None:
                seq = twcc.extension_value(packet.ext, feedback.ext_id)
                if seq is not None:
                    if held_us is not None:
                        # No poll yet (only TURN has delivered): the offset now.
                        offset_us = reading.offset_us or clock_offset_us()
                        monotonic_us = held_us - offset_us
                    feedback.add(seq, packet.ssrc, monotonic_us)
            lean.handle(packet, plain, arrival_ms, arrival)

        def data_received(data: bytes, component: int, arrival_us: int | None = None) -> None:
            if not 127 < data[0] < 192 or 191 < data[1] < 224:
                original(data, component)  # STUN, DTLS, RTCP: aiortc's way
                return
            srtp: Any = dtls._rx_srtp  # None until the handshake is done (or early keys)
            task = starting[0]
            if srtp is None or (task is not None and not task.done()):
                if len(early) < EARLY_PACKETS:
                    early.append(
                        (data, time.time_ns() // 1000 if arrival_us is None else arrival_us)
                    )
                if srtp is None:
                    go_early(data)
                return
            if early:
                take_held(srtp)
            take(data, srtp, arrival_us)

        setattr(connection, "data_received", data_received)  # noqa: B010 - this instance
        self.taps.append((connection, data_received))

    def skip_stun_parse(self) -> None:
        """Call after ``setLocalDescription``: RTP skips aioice's STUN parse attempt.

        aioice's UDP protocol tries to parse every datagram as STUN before it
        hands it on (an exception per media packet); RTP and RTCP cannot be
        STUN (RFC 7983: first byte 128-191), so they go straight to the tap.
        The host candidates' sockets are then read by the recorder's
        ``Reading`` (every ``reading.POLL_INTERVAL``, with the kernel's receive
        times); TURN candidates keep aioice's way.
        """
        for connection, data_received in self.taps:
            for protocol in getattr(connection, "_protocols", []):
                if type(protocol) is aioice.ice.StunProtocol:  # host candidates, not TURN
                    self.reading.take_over(protocol, data_received)
