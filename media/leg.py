"""A recording leg: one participant's send-only connection to the recorder.

``Recorder`` starts and ends legs; a leg keeps what comes off its wire (to its
part's file and to the viewers it is relayed to), asks for keyframes while it
lives, and at its end waits for the packets its last frames still miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from media import seam, twcc
from media.assembler import REORDER_SECONDS
from media.finalize import FinishedFile
from media.lean import NACK_GIVE_UP_MS
from media.packets import PacketWriter
from media.relay import Fanout
from media.rtp import starts_keyframe
from media.tap import RtpTap
from media.writer import SUFFIX_FOR

log = logging.getLogger(__name__)

# Viewers' keyframe requests reach the source at most this often (a burst of
# PLIs from three viewers is one request), and not while the keyframe last
# asked for is on its way (for up to KEYFRAME_RETRY): on a 1 Mbit/s uplink it
# takes longer than this gap to come, and every keyframe makes Chromium's
# pacer drop the video frames it holds queued (sent, never on the wire).
KEYFRAME_MIN_GAP = 0.3
# A keyframe the writer waits for (the start, a gap, a lost frame) is asked
# for again after this long: on a 300 ms, lossy uplink a keyframe takes more
# than half a second to arrive, and asking every 0.5 s brought two or three.
KEYFRAME_RETRY = 1.0
# ... and not while a keyframe that came this recently may still reach it: the
# writer takes frames only once the holes before them are filled or given up.
KEYFRAME_WAIT = REORDER_SECONDS
# The seek interval's keyframe is asked for once the browser's pacer has held
# the video's packets no longer than this lately (``media/sendqueue.py``): the
# keyframe makes the pacer drop what it holds (4 frames of a 20 s call's file
# at 10 % loss and 300 ms) ...
INTERVAL_QUEUE_MS = 20.0
# ... or, the queue never that short, this long after the interval came due.
INTERVAL_PATIENCE = 5.0
# While the interval is due, the queue is looked at this often.
INTERVAL_POLL = 0.05
# At a leg's end, the packets its last frames still miss are asked for again
# for at most this long (as long as a hole is asked for in the call:
# ``lean.NACK_GIVE_UP_MS``), checking this often.
DRAIN_SECONDS = NACK_GIVE_UP_MS / 1000
DRAIN_STEP = 0.02
# The frame the end came in the middle of: when none of its packets has come
# for this long, the next few sequence numbers are asked for (its last packets
# may have been lost, and nothing sent after the end reveals them).
OPEN_FRAME_QUIET = 0.1
OPEN_FRAME_ASK = 8
# A call that another page ended: this leg's page goes on sending until it
# hears of the end, its last frames on the way; the end is read once its video
# has been quiet this long (the page stopped), at most SETTLE_SECONDS.
SETTLE_QUIET = 0.15
SETTLE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RecordingKey:
    """Which recording: a consultation, a participant, and the part number
    (a participant who reconnects continues in a numbered follow-on part)."""

    consultation_id: str
    participant_id: str
    part: int = 1

    def filename(self, fmt: str) -> str:
        """File name of the finished part."""
        return f"{self.participant_id}-part{self.part}{SUFFIX_FOR[fmt]}"


@dataclass(eq=False)
class Leg:
    """A live recording leg."""

    key: RecordingKey
    pc: RTCPeerConnection
    started_at: datetime
    t0: float
    writer: PacketWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    receivers: list[Any] = field(default_factory=list)
    # The transport-wide feedback sent to the browser (None: REMB, as aiortc does).
    feedback: twcc.TransportFeedback | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    result: asyncio.Future[LegResult] | None = None
    # The viewers this leg's frames are relayed to (None until negotiated).
    fanout: Fanout | None = None
    # A viewer asked for a keyframe (or joined): the keyframe task wakes up.
    keyframe_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    # The part whose file could not be written, being finished while the leg
    # goes on without a writer (``Recorder._writing_failed``).
    failed_part: asyncio.Future[LegResult] | None = None
    # The packets taken off the wire (set once the answer is made).
    tap: RtpTap | None = None
    # While the leg ends (``drain``): only the video packets up to
    # this sequence number (retransmissions of what was missing) are kept ...
    cut: int | None = None
    draining: bool = False
    # ... and the rest of the frame the page was sending when the end came
    # (its RTP timestamp; None: none), which moves the cut on to its last packet.
    open_frame: int | None = None
    # The last video media packet kept (the newest but for a late one).
    last_video: seam.KeptPacket | None = None
    # When the last packet of the open frame came (``time.monotonic()``).
    open_at: float = 0.0
    # The video's MIME type ("video/vp8"; None: no video), and when the first
    # packet of a keyframe last came while the writer awaited one or one was
    # asked for (``time.monotonic()``; looked for only then: ``keep`` runs per
    # packet). ``keyframe_asked``: a keyframe was asked for and has not come.
    video_mime: str | None = None
    keyframe_at: float = float("-inf")
    keyframe_asked: bool = False
    # When a keyframe was last asked for (``time.monotonic()``; the leg's first
    # video packet counts as one: the page begins with a keyframe).
    asked_at: float = 0.0
    # False when the leg ends because its page was replaced (a reload): the
    # page that could resend its last packets is gone, so none are asked for.
    ask_at_end: bool = True
    # True when the call was ended by another page: ``drain`` first waits for
    # this page to stop its video (``_settled``).
    settle: bool = False

    def keep(self, packet: seam.KeptPacket) -> None:
        """A packet off the wire (``tap.RtpTap``), to this part's file if it has one.

        Looked up per packet: a failed writer is dropped and a resumed part
        brings a new one, while the connection and its relay go on.
        """
        writer = self.writer
        if self.draining:
            if not self._before_end(packet):
                return  # sent after the leg was told to end: not recorded
        elif not packet[1] and packet[5]:
            if self.last_video is None:
                # The page begins with a keyframe: this is its first packet, or
                # its start is being asked for again (``lean._ask_for_start``).
                # Asking the page for another now made it encode one 0.35 s
                # after its first, and the keyframe flush (``KEYFRAME_MIN_GAP``)
                # dropped what the first still had queued: the file began at
                # the second (2 calls in 20 on the 10 % profile).
                self.keyframe_asked = True
                self.asked_at = self.keyframe_at = packet[0]
            self.last_video = packet
            if (
                (self.keyframe_asked or (writer is not None and writer.needs_keyframe))
                and self.video_mime is not None
                and starts_keyframe(self.video_mime, packet[5])
            ):
                self.keyframe_at = packet[0]  # only while a keyframe is awaited
                # It answers every request made before it (the viewers'
                # included: the relay hands it on next).
                self.keyframe_asked = False
                self._viewers_answered()
        if writer is not None:
            writer.keep(packet)
        fanout = self.fanout
        if fanout is not None and not packet[1] and fanout.relaying():
            fanout.forward_packet(packet[2], packet[3], packet[4], packet[5])

    def _before_end(self, packet: seam.KeptPacket) -> bool:
        """While draining: whether ``packet`` was sent before the end (a resend
        of one, or the rest of the frame that was being sent)."""
        if packet[1] or self.cut is None:
            return False
        seq = packet[3]
        if not _newer(seq, self.cut):
            return True
        if packet[4] != self.open_frame:
            return False
        self.cut = seq  # what the frame still misses before this is asked for
        self.open_at = time.monotonic()
        if packet[2]:
            self.open_frame = None  # its last packet: the frame is whole
        return True

    async def drain(self) -> None:
        """Before the leg's connection closes, get the packets still missing of its last frames.

        A packet lost on the uplink is asked for again (NACK) when the next one
        reveals the hole, and again after a round trip and a half; the frame,
        and every frame after it up to the next keyframe, waits for it. At the
        end of a call the last of these were cut off: at 10 % loss and 300 ms
        about half a second of every recording. The page keeps the connection
        open, sending nothing new, until this side closes it; meanwhile what is
        missing is asked for again, for at most ``DRAIN_SECONDS``. Packets the
        page sends after the end (it was not the page that ended the leg) are
        not recorded.
        """
        tap = self.tap
        if tap is None or self.writer is None or self.pc.connectionState != "connected":
            return
        if self.settle:
            await self._settled()
        tap.read_now()  # what arrived before the end, to the last datagram
        self.cut = tap.video_high()
        last = self.last_video
        if last is not None and not last[2] and last[3] == self.cut:
            # The end came in the middle of a frame: its packets still on the
            # way were sent before the end, and the frame is the call's.
            self.open_frame = last[4]
        self.draining = True
        missing = tap.outstanding(self.cut)
        if not missing and self.open_frame is None:
            return
        if not self.ask_at_end:
            log.info(
                "recording peer=%s end: %d packet(s) missing, not asked for (replaced)",
                self.key.participant_id,
                missing,
            )
            return
        started = self.open_at = time.monotonic()
        asked_after = False
        while self.pc.connectionState == "connected" and (
            self.open_frame is not None or tap.outstanding(self.cut)
        ):
            now = time.monotonic()
            if now - started >= DRAIN_SECONDS:
                break
            if self.open_frame is not None and not asked_after:
                if now - self.open_at >= OPEN_FRAME_QUIET and self.cut is not None:
                    tap.ask_after(self.cut, OPEN_FRAME_ASK, seam.current_ms())
                    asked_after = True
            tap.ask_again(seam.current_ms())
            await asyncio.sleep(DRAIN_STEP)
        log.info(
            "recording peer=%s end: %d packet(s) missing, %d after %.2f s%s",
            self.key.participant_id,
            missing,
            tap.outstanding(self.cut),
            time.monotonic() - started,
            "" if self.open_frame is None else "; the last frame did not end",
        )

    async def _settled(self) -> None:
        """Wait until this leg's page has stopped its video (at most ``SETTLE_SECONDS``).

        Another page ended the call: this page learns it from the server one
        way later, and what its browser still held of its camera's frames until
        the end (its encoder, its pacer, a one-way trip) comes after that. The
        page stops its camera once it hears of the end (``recording.js``
        ``drain``): its video quiet for ``SETTLE_QUIET`` means the rest is in.
        """
        started = time.monotonic()
        while self.pc.connectionState == "connected":
            now = time.monotonic()
            last = self.last_video[0] if self.last_video is not None else float("-inf")
            if now - last >= SETTLE_QUIET:
                return
            if now - started >= SETTLE_SECONDS:
                log.info(
                    "recording peer=%s end: the page still sent video after %.1f s",
                    self.key.participant_id,
                    SETTLE_SECONDS,
                )
                return
            await asyncio.sleep(DRAIN_STEP)

    async def consume(self, track: MediaStreamTrack) -> None:
        # aiortc's queues are unbounded: every accepted track is drained. Frames
        # come out of aiortc only while the leg is relayed (``RtpTap``); the
        # file is made from the packets.
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, seam.EncodedFrame) and self.fanout is not None:
                    self.fanout.forward(frame)
        except MediaStreamError:
            return

    def _viewers_answered(self) -> None:
        """A keyframe came or was asked for: what the viewers wanted is answered."""
        self.keyframe_wanted.clear()
        if self.fanout is not None:
            self.fanout.wants.clear()

    def _viewers_why(self) -> str:
        """The viewers' reasons since the last request or keyframe: "a viewer (joined 2)"."""
        fanout = self.fanout
        if fanout is None or not fanout.wants:
            return "a viewer"
        return (
            "a viewer (" + ", ".join(f"{why} {n}" for why, n in sorted(fanout.wants.items())) + ")"
        )

    async def ask_for_keyframes(self, interval: float) -> None:
        # Keyframes are asked for until the first one arrives and after a lost
        # frame (the writer says), every ``interval`` (seekable files), and
        # when a viewer of the relay wants one, at most every KEYFRAME_MIN_GAP.
        #
        # The writer's need is the writer's, seconds behind the wire: the page
        # begins with a keyframe, and a keyframe that came may still be on its
        # way to the writer. Asking for one then (when the first packet came,
        # and again a second later) made the browser send two keyframes it
        # need not have sent in the first 1.6 s of every leg (a keyframe is
        # several frames' worth of bits on the uplink).
        while not self.done.is_set():
            writer = self.writer
            now = time.monotonic()
            since = now - self.asked_at
            asked = self.keyframe_wanted.is_set()
            # The keyframe last asked for may still come.
            coming = self.keyframe_asked and since < KEYFRAME_RETRY
            for_viewer = asked and since >= KEYFRAME_MIN_GAP and not coming
            for_writer = (
                writer is not None
                and writer.needs_keyframe
                and since >= KEYFRAME_RETRY
                and now - self.keyframe_at >= KEYFRAME_WAIT
            )
            overdue = now - max(self.asked_at, self.t0) - interval
            queued = None
            if overdue >= 0 and self.tap is not None:
                queued = self.tap.send_queue_ms(now)
            for_interval = overdue >= 0 and (
                queued is None or queued <= INTERVAL_QUEUE_MS or overdue >= INTERVAL_PATIENCE
            )
            if for_viewer or for_writer or for_interval:
                if for_viewer:
                    why = self._viewers_why()
                elif for_writer:
                    why = "the writer"
                elif queued is None:
                    why = "the interval"
                else:
                    why = f"the interval (send queue {queued:.0f} ms, {overdue:.2f} s due)"
                self._viewers_answered()
                asked = False
                for receiver in self.receivers:
                    with contextlib.suppress(Exception):
                        if await seam.request_keyframe(receiver):
                            self.asked_at = now
                            self.keyframe_asked = True
                            log.info(
                                "recording peer=%s keyframe asked for %s, %.2f s into the leg",
                                self.key.participant_id,
                                why,
                                now - self.t0,
                            )
            if asked:
                # Asked too soon after the last request, or while its keyframe
                # may come: wait out the gap (looking again at least every
                # 0.25 s: the keyframe's coming clears the request).
                gap = KEYFRAME_RETRY if coming else KEYFRAME_MIN_GAP
                timeout = max(0.01, min(0.25, gap - since))
                waits = {asyncio.ensure_future(self.done.wait())}
            else:
                # While the interval waits for a short queue, it is looked at often.
                timeout = INTERVAL_POLL if overdue >= 0 and not for_interval else 0.25
                waits = {
                    asyncio.ensure_future(self.done.wait()),
                    asyncio.ensure_future(self.keyframe_wanted.wait()),
                }
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()


def _newer(seq: int, than: int) -> bool:
    """Whether RTP sequence number ``seq`` comes after ``than`` (16 bits, wrapping)."""
    return 0 < (seq - than) & 0xFFFF < 0x8000


@dataclass(frozen=True, kw_only=True)
class LegResult:
    """What a finished leg produced."""

    key: RecordingKey
    started_at: datetime
    first_media_offset: float | None
    file: FinishedFile | None
    error: str | None = None
