"""The relay: a recorded participant's encoded frames, sent on to the others.

A township clinic's uplink is the call's bottleneck (about 1 Mbit/s). In a
browser mesh with a recording leg beside it, the clinic sends its camera once
per other participant and once more to the recorder, and the connections
compete for the uplink as equals. With the relay, the clinic sends once, to the
server: the recorder already holds every frame still encoded (``seam.py``), so
the server writes it to the file and hands the same bytes to one send-only
connection per viewer. Nothing is decoded or re-encoded. Video goes on packet
by packet as it arrives (``media/forward.py``: the viewer's jitter buffer, not
the server's, waits for a retransmission); audio goes as Opus frames, which
aiortc's sender packs as they are (``RTCRtpSender`` calls ``encoder.pack``).

Loss is repaired hop by hop: the recorder's receiver NACKs the clinic, each
viewer's connection NACKs the server (aiortc keeps a send history per
connection). A viewer's keyframe request (PLI/FIR) is forwarded to the source
(``seam.on_keyframe_request``); a viewer whose queue overflows (a stalled
connection) drops what it holds up to the next keyframe and asks for one,
without slowing the source or the other viewers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from media import seam
from media.errors import RecordingFailed
from media.forward import PacketForwarder
from media.hold import accepted_id, with_playout_delay

log = logging.getLogger(__name__)

# Frames a viewer may fall behind before it skips to the next keyframe: about a
# second of video (30 fps) or of audio (50 packets a second).
QUEUE_FRAMES = 48
# A viewer's own keyframe request within this long of its start on a keyframe
# is not passed on to the source. On a lossy uplink the keyframe a viewer
# starts on lacks packets that the recorder has asked for again, and they come
# an uplink round trip later (0.32-0.7 s at 10 % loss and 300 ms); Chromium asks
# for a keyframe 0.10-0.16 s after its first packet when none is whole by then,
# and again 0.12-0.17 s later. Passed on, the request made the clinic send a
# second keyframe, which came no sooner than the repairs and made the clinic's
# browser drop the frames its pacer held (8-24 frames of the recording, 4 calls
# in 28).
# A viewer still without a picture after this asks again and is heard.
VIEWER_KEYFRAME_GRACE = 1.0


class RelayTrack(MediaStreamTrack):
    """One kind (audio or video) of a source, as one viewer receives it.

    ``offer`` is called on the event loop for each frame the recorder takes
    from the source; aiortc's sender pulls the frames with ``recv``.
    """

    def __init__(self, kind: str) -> None:
        """A track of ``kind`` ("audio" or "video") with an empty queue."""
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[seam.EncodedFrame | None] = asyncio.Queue(QUEUE_FRAMES)
        # A viewer starts, and restarts after an overflow, on a keyframe.
        self.waiting = kind == "video"
        self.forwarded = 0
        self.skipped = 0

    def offer(self, frame: seam.EncodedFrame) -> bool:
        """Queue ``frame``; False when this viewer needs a keyframe first."""
        if self.readyState != "live":
            return True
        if self.waiting:
            if not frame.keyframe:
                self.skipped += 1
                return False
            self.waiting = False
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            # This viewer cannot keep up: drop what it holds, start again on a
            # keyframe. The source and the other viewers are not slowed.
            while not self.queue.empty():
                self.queue.get_nowait()
                self.skipped += 1
            self.skipped += 1
            self.waiting = self.kind == "video"
            return not self.waiting
        self.forwarded += 1
        return True

    async def recv(self) -> av.Packet[Any]:
        """The next frame as an ``av.Packet`` in the codec's clock."""
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.queue.get()
        if frame is None:
            raise MediaStreamError
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = Fraction(1, frame.clock_rate)
        return packet

    def stop(self) -> None:
        """End the track: aiortc's sender stops pulling."""
        if self.readyState == "live":
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
        super().stop()


@dataclass(eq=False)
class Downlink:
    """One viewer's send-only connection carrying one source's tracks."""

    viewer: str
    pc: RTCPeerConnection
    # Audio goes frame by frame (an Opus packet is a frame); video packet by
    # packet (``media/forward.py``).
    tracks: dict[str, RelayTrack] = field(default_factory=dict)
    video: PacketForwarder | None = None
    stand_ins: list[RelayTrack] = field(default_factory=list)
    answered: bool = False


class Fanout:
    """The downlinks of one source (one recording leg)."""

    def __init__(
        self,
        config: RTCConfiguration,
        *,
        video_codec: str | None,
        audio: bool,
        want_keyframe: Callable[[], None],
        hold: Callable[[], int] | None = None,
    ) -> None:
        """Prepare to relay a source sending ``video_codec`` (and Opus if ``audio``).

        Args:
            config: the recorder's RTCConfiguration (explicit ICE servers).
            video_codec: "vp8" or "h264" (None: no video).
            audio: whether the source sends Opus.
            want_keyframe: asks the source for a keyframe (rate-limited by the caller).
            hold: how long (ms) the viewers should hold the video, for the
                retransmissions of the source's lost packets (``media/hold.py``);
                None: never.
        """
        self.config = config
        self.video_codec = video_codec
        self.audio = audio
        self.want_keyframe = want_keyframe
        self.hold = hold
        self.downlinks: dict[str, Downlink] = {}
        self._relaying = False
        self.held_ms = 0  # the longest hold a closed viewer's video was sent
        # Why the viewers wanted keyframes, counted until the leg asks or one
        # comes (its log says them): "joined", "asked" (a PLI or FIR), and
        # "waiting" (a packet refused by a viewer's forwarder or track that
        # waits for a keyframe to start on, counted per packet).
        self.wants: collections.Counter[str] = collections.Counter()

    def _want(self, why: str) -> None:
        self.wants[why] += 1
        self.want_keyframe()

    def relaying(self) -> bool:
        """Whether a viewer is connected (frames are wanted, not only packets)."""
        return self._relaying  # asked for every packet: kept, not computed

    def _viewers_changed(self) -> None:
        self._relaying = any(link.answered for link in self.downlinks.values())

    def forward_packet(self, marker: bool, seq: int, ts: int, payload: bytes) -> None:
        """Hand a video packet of the source (as it arrived) to every viewer."""
        need = False
        for link in self.downlinks.values():
            video = link.video
            if video is not None and link.answered and not video.offer(marker, seq, ts, payload):
                need = True
        if need:
            self._want("waiting")

    def forward(self, frame: seam.EncodedFrame) -> None:
        """Hand a frame the recorder took from the source to every viewer (audio)."""
        need = False
        for link in self.downlinks.values():
            track = link.tracks.get(frame.kind)
            if track is not None and link.answered and not track.offer(frame):
                need = True
        if need:
            self._want("waiting")

    async def offer(self, viewer: str) -> str:
        """A new send-only connection to ``viewer``; returns its offer SDP.

        Replaces the viewer's earlier connection from this source (a reload, a
        resumed socket).
        """
        await self.close(viewer)
        pc = RTCPeerConnection(configuration=self.config)
        link = Downlink(viewer=viewer, pc=pc)
        self.downlinks[viewer] = link
        try:
            kinds = (["audio"] if self.audio else []) + (["video"] if self.video_codec else [])
            if not kinds:
                raise RecordingFailed("nothing to relay")
            for kind in kinds:
                track = RelayTrack(kind)
                transceiver = pc.addTransceiver(track, direction="sendonly")
                transceiver.setCodecPreferences(self._codecs(kind))
                seam.on_keyframe_request(transceiver.sender, lambda: self._viewer_asks(link))
                seam.use_packer(transceiver.sender, kind)
                if kind == "video" and self.video_codec:
                    # The track only stands in the transceiver: the forwarder
                    # sends the packets.
                    link.video = PacketForwarder(transceiver.sender, self.video_codec, self.hold)
                    link.stand_ins.append(track)
                else:
                    link.tracks[kind] = track

            @pc.on("connectionstatechange")
            async def on_state() -> None:
                if pc.connectionState == "failed" and self.downlinks.get(viewer) is link:
                    log.info("relay to viewer=%s failed", viewer)
                    await self.close(viewer)

            await pc.setLocalDescription(await pc.createOffer())
        except Exception:
            await self.close(viewer)
            raise
        sdp: str = pc.localDescription.sdp
        return with_playout_delay(sdp) if link.video is not None and self.hold else sdp

    def _viewer_asks(self, link: Downlink) -> None:
        """A viewer's keyframe request (PLI/FIR), passed on to the source unless
        the viewer started on a keyframe less than VIEWER_KEYFRAME_GRACE ago."""
        video = link.video
        if video is not None and video.since_start() < VIEWER_KEYFRAME_GRACE:
            return
        self._want("asked")

    async def answer(self, viewer: str, sdp: str) -> bool:
        """The viewer's answer to our offer; False if no offer to it is open."""
        link = self.downlinks.get(viewer)
        if link is None or link.answered:
            return False
        if link.video is not None:
            link.video.delay_id = accepted_id(sdp)
        await link.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        link.answered = True
        self._viewers_changed()
        self._want("joined")
        return True

    async def close(self, viewer: str | None = None) -> None:
        """Close the connection to ``viewer`` (None: to every viewer)."""
        names = list(self.downlinks) if viewer is None else [viewer]
        for name in names:
            link = self.downlinks.pop(name, None)
            self._viewers_changed()
            if link is None:
                continue
            for track in [*link.tracks.values(), *link.stand_ins]:
                track.stop()
            if link.video is not None:
                link.video.stop()
                if link.video.delay is not None:
                    self.held_ms = max(self.held_ms, link.video.delay.most_ms)
            await link.pc.close()

    def _codecs(self, kind: str) -> list[RTCRtpCodecCapability]:
        # Offer exactly what the source sends (and RTX for video): the frames
        # are passed on as they are, so the viewer must take that codec.
        wanted = "opus" if kind == "audio" else self.video_codec
        capabilities = RTCRtpSender.getCapabilities(kind).codecs
        chosen = [c for c in capabilities if c.mimeType.split("/")[1].lower() == wanted]
        rtx = [c for c in capabilities if c.mimeType.lower().endswith("/rtx")]
        return [*chosen, *rtx]
