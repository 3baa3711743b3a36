"""The network probe of the pre-call check: a server-side peer that echoes.

A page about to hold a consultation opens an RTCPeerConnection to this server
with one data channel (unordered, ``maxRetransmits: 0``: lost packets stay lost,
as RTP's do) and sends numbered, timestamped packets at a paced rate for a few
seconds. For each packet the probe answers with a small acknowledgement:

    seq (uint32) | the page's send time (float64) | packets so far (uint32) | bytes so far (uint32)

all big-endian, so the page measures the round trip from its own clock, and the
loss and uplink throughput from what the server says it received. The page runs
the probe once per path: direct (``iceTransportPolicy: "all"``) and through each
configured TURN transport (``"relay"`` with only that ``turn:`` URL); the probe's
side is the same each time, host candidates on the configured addresses.

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

from media import seam
from media.errors import MediaError

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
    if len(sections) != 1 or sections[0].kind != "application":
        return "must hold exactly one data channel section (m=application)"
    section = sections[0]
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

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except ValueError as exc:
            await self._close(pc)
            raise ProbeRefused(f"sdp cannot be answered: {exc}") from None
        except BaseException:
            await self._close(pc)
            raise
        timer = asyncio.ensure_future(self._expire(pc))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)
        log.info("network probe started (%d running)", len(self.peers))
        return str(pc.localDescription.sdp)

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
