"""The network probe of the pre-call check: a server-side peer that echoes and listens.

A page about to hold a consultation opens an RTCPeerConnection to this server
with one data channel (unordered, ``maxRetransmits: 0``) and, once its round
trip is measured, sends video on it for a few seconds. For each data channel
packet the probe answers with a small acknowledgement:

    seq (uint32) | the page's send time (float64) | packets so far (uint32) | bytes so far (uint32)

all big-endian, so the page measures the round trip from its own clock. The
video (a drawn picture of noise, never the camera) is how the uplink and its
loss are measured, as a call will meet them: the probe answers it as the
recorder answers a leg, with transport-wide feedback (``media.twcc``) and no
NACK, and takes its packets off the wire without decoding or keeping them
(``media.tap``; video offered without the feedback's extension is taken the
same way, under aiortc's REMB). The browser's own congestion controller then
finds what the path carries for video (its ``availableOutgoingBitrate``), and
the probe's RTCP receiver reports say what was lost on the way
(``remote-inbound-rtp``), repaired by nothing.

Data channel packets, paced at 2.5 Mbit/s, measured neither the uplink nor the
loss of a township link (1 Mbit/s, 10 % loss, 300 ms: 89 kbit/s and 81.7 %
"loss", a verdict of "unusable" for a link whose calls carried 400 kbit/s of
video at 23 fps): the channel's SCTP backs off at every loss as TCP does, and
what it still held in the page's buffer at the end was counted lost.

The page runs the probe once per path: direct (``iceTransportPolicy: "all"``)
and through each configured TURN transport (``"relay"`` with only that
``turn:`` URL); the probe's side is the same each time, host candidates on the
configured addresses.

Each probe closes itself after ``lifetime`` seconds, and at most ``max_probes``
run at once: the endpoint is open to every logged-in user of the call roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Sequence

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp

from media import seam, twcc
from media.errors import MediaError
from media.reading import Reading
from media.tap import RtpTap

log = logging.getLogger(__name__)

ACK = struct.Struct("!IdII")
HEADER = struct.Struct("!Id")  # seq, the page's send time (ms)
MAX_PACKET = 16 * 1024


class ProbeBusy(MediaError):
    """Too many probes are running; the page tries again in a moment."""

    code = "too_many_requests"


class ProbeRefused(MediaError):
    """The offer cannot be answered (not SDP, no data channel section)."""

    code = "invalid_fields"


def without_nack(sdp: str) -> str:
    """``sdp`` (the probe's answer) without NACK: the page resends nothing, so the
    receiver reports count every packet lost on the way."""
    lines = sdp.split("\r\n")
    return "\r\n".join(
        line
        for line in lines
        if not (line.startswith("a=rtcp-fb:") and line.split(" ", 1)[1:] == ["nack"])
    )


def offer_problem(text: str) -> str | None:
    """What keeps ``text`` from being a probe offer (None: nothing).

    Mirrors what aiortc 1.16 refuses in ``setRemoteDescription`` (see
    ``media/offer.py``), for the one ``m=application`` section a probe has.
    """
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except Exception:  # any parser failure (assert, int(), regex) means "not SDP"
        return "is not a valid SDP description"
    sections = description.media
    kinds = sorted(s.kind for s in sections)
    if kinds not in (["application"], ["application", "video"]):
        return "must hold one data channel section (m=application) and at most one video section"
    section = next(s for s in sections if s.kind == "application")
    if section.ice is None or not section.ice.usernameFragment or not section.ice.password:
        return "needs ICE credentials (a=ice-ufrag, a=ice-pwd)"
    if section.dtls is None or not section.dtls.fingerprints:
        return "needs a DTLS fingerprint (a=fingerprint)"
    if section.sctp_port is None and section.sctpmap == {}:
        return "needs an SCTP port (a=sctp-port)"
    return None


class Prober:
    """The echoing peers of this server process."""

    def __init__(
        self,
        *,
        stun_urls: Sequence[str] = (),
        host_addresses: Sequence[str] = (),
        max_probes: int = 8,
        lifetime: float = 30.0,
    ) -> None:
        """Prepare the prober.

        Args:
            stun_urls: STUN servers for the probe's own candidates (none by
                default; explicit, so that aiortc never asks a public one).
            host_addresses: addresses to gather host candidates on (aioice skips
                loopback by itself); empty: every interface. The recorder sets
                the same, process-wide.
            max_probes: how many may run at once.
            lifetime: seconds after which a probe closes whatever its state.
        """
        seam.restrict_host_addresses(host_addresses)
        self.config = RTCConfiguration(
            iceServers=[RTCIceServer(urls=list(stun_urls))] if stun_urls else []
        )
        self.max_probes = max_probes
        self.lifetime = lifetime
        self.peers: set[RTCPeerConnection] = set()
        self._timers: set[asyncio.Task[None]] = set()
        # The probes' video sockets read, and their feedback sent, together.
        self.reading = Reading()

    async def answer(self, offer_sdp: str) -> str:
        """Answer a page's probe offer; the answer SDP (with all our candidates).

        Raises:
            ProbeRefused: the offer is not a probe offer.
            ProbeBusy: ``max_probes`` are running.
        """
        problem = offer_problem(offer_sdp)
        if problem is not None:
            raise ProbeRefused(f"sdp {problem}")
        if len(self.peers) >= self.max_probes:
            raise ProbeBusy("too many network checks are running; try again in a moment")
        pc = RTCPeerConnection(configuration=self.config)
        self.peers.add(pc)
        counts = [0, 0]  # packets, bytes

        @pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            def on_message(message: bytes | str) -> None:
                if not isinstance(message, bytes) or len(message) < HEADER.size:
                    return
                counts[0] += 1
                counts[1] += len(message)
                seq, sent = HEADER.unpack_from(message)
                if channel.readyState == "open":
                    ack = ACK.pack(seq, sent, counts[0] & 0xFFFFFFFF, counts[1] & 0xFFFFFFFF)
                    channel.send(ack)

            channel.on("message", on_message)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._close(pc)

        tap: RtpTap | None = None
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            ext_id = twcc.transport_cc_id(offer_sdp)
            if any(t.kind == "video" for t in pc.getTransceivers()):
                tap = RtpTap(self.reading)
                feedback = twcc.TransportFeedback(ext_id) if ext_id is not None else None
                tap.attach(pc, _drop, _not_relayed, feedback)
            await pc.setLocalDescription(await pc.createAnswer())
            answer = str(pc.localDescription.sdp)
            if tap is not None:
                tap.skip_stun_parse()
                answer = without_nack(twcc.with_transport_cc(answer, offer_sdp))
        except ValueError as exc:
            await self._close(pc)
            raise ProbeRefused(f"sdp cannot be answered: {exc}") from None
        except BaseException:
            await self._close(pc)
            raise
        timer = asyncio.ensure_future(self._expire(pc))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)
        if tap is not None:
            sending = asyncio.ensure_future(tap.send_feedback())
            self._timers.add(sending)
            sending.add_done_callback(self._timers.discard)
        log.info(
            "network probe started (%d running)%s",
            len(self.peers),
            ", with video" if tap is not None else "",
        )
        return answer

    async def _expire(self, pc: RTCPeerConnection) -> None:
        await asyncio.sleep(self.lifetime)  # a deadline, not a wait for a condition
        await self._close(pc)

    async def _close(self, pc: RTCPeerConnection) -> None:
        if pc in self.peers:
            self.peers.discard(pc)
            with contextlib.suppress(Exception):
                await pc.close()

    async def close(self) -> None:
        """Close every probe (server shutdown)."""
        for timer in list(self._timers):
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)
        for pc in list(self.peers):
            await self._close(pc)


def _drop(packet: seam.KeptPacket) -> None:
    """The probe keeps none of the video it takes off the wire."""


def _not_relayed() -> bool:
    """The probe's video goes nowhere (``RtpTap``'s ``relaying``)."""
    return False
