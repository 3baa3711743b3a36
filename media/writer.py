"""Muxing one participant's encoded audio and video into one file, off the loop.

``FrameMuxer`` muxes ``EncodedFrame``s with PyAV (blocking, on a thread). The
recorder's lean path (``packets.PacketWriter``) runs it on the leg's thread
with frames put together from the packets it keeps, writing the final file as
it goes (the packet log beside it is what survives a crash).

Timing: aiortc re-bases each track's RTP timestamps to start at 0, so audio and
video would both start at 0 whatever their real start. Each track is therefore
anchored at the arrival time of its first frame, relative to the first frame of
either track (the file's time 0), and keeps its RTP timing from there: gaps
(loss, muted camera) stay gaps, and audio and video stay in sync to within the
arrival jitter of their first frames. Where time 0 lies after the leg's start is
reported as ``first_media_offset``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from av.container import OutputContainer
from av.stream import Stream

from media.assembler import Loss
from media.bitstream import picture_size
from media.finalize import write_start
from media.opushead import opus_template
from media.seam import EncodedFrame

log = logging.getLogger(__name__)

CONTAINER_FOR = {"vp8": "webm", "h264": "mp4", None: "webm"}
SUFFIX_FOR = {"webm": ".webm", "mp4": ".mp4"}
OPUS_FRAME = 960  # 20 ms at 48 kHz
# Header size when no keyframe told the real one (players use the bitstream's).
DEFAULT_SIZE = (640, 480)
MAX_WAIT_FOR_KEYFRAME = (
    5.0  # seconds of buffered media before opening anyway  # half a second of 90 kHz video clock
)


@dataclass
class TrackState:
    """Per-track timing and counters (touched only on the writer thread)."""

    stream: Stream
    clock_rate: int
    base: int | None = None
    last_pts: int = -1
    waiting_for_key: bool = True
    packets: int = 0
    dropped: int = 0
    first_pts: int | None = None
    end_pts: int = 0


@dataclass
class WriterStats:
    """What was written, for the records and the tests."""

    path: Path
    format: str
    video_codec: str | None
    audio_codec: str | None
    video_packets: int = 0
    audio_packets: int = 0
    video_dropped: int = 0
    # Video frames never completed from their packets, or left out after one
    # up to the next keyframe (media/packets.py); read live by /metrics.
    video_lost: int = 0
    # Why (``assembler.Loss``, the first few), for the leg's log at its end.
    video_losses: list[Loss] = field(default_factory=list)
    video_losses_full: bool = False  # more came than ``video_losses`` keeps
    first_media_offset: float | None = None
    errors: list[str] = field(default_factory=list)


class FrameMuxer:
    """Muxes ``EncodedFrame``s into one file with PyAV (blocking: call it on a thread).

    The header needs the picture size, which the first video keyframe tells;
    until then frames wait here (a few seconds at most).
    """

    def __init__(
        self,
        path: Path,
        *,
        stats: WriterStats,
        t0: float,
        options: dict[str, str],
        note: Path | None = None,
    ) -> None:
        """Prepare (but do not yet create) ``path``.

        Args:
            path: the file to write.
            stats: where counts, the first media offset and errors go.
            t0: ``time.monotonic()`` of the recording's start (the frames' clock).
            options: the container options.
            note: where the first media offset is noted (default: beside ``path``).
        """
        self.path = path
        self.stats = stats
        self.t0 = t0
        self.format = stats.format
        self.video_codec = stats.video_codec
        self.audio = stats.audio_codec is not None
        self.options = options
        self.note = note or path
        self.needs_keyframe = self.video_codec is not None
        self._origin: float | None = None
        self._out: OutputContainer | None = None
        self._tracks: dict[str, TrackState] = {}
        self._pending: list[EncodedFrame] = []

    def add(self, frame: EncodedFrame) -> None:
        """Mux one frame (or hold it until the header can be written)."""
        if self._out is None:
            self._pending.append(frame)
            size = self._size_from(self._pending)
            if size is None:
                return
            self._start(size)
            return
        self._write(self._out, self._tracks, frame)

    def close(self) -> None:
        """Write what is held and close the file (errors go to ``stats.errors``)."""
        try:
            if self._out is None and self._pending:
                self._start(DEFAULT_SIZE)
        except Exception as exc:
            self.stats.errors.append(repr(exc))
        if self._out is not None:
            try:
                self._out.close()
            except Exception as exc:
                self.stats.errors.append(repr(exc))
        for kind, state in self._tracks.items():
            if kind == "video":
                self.stats.video_packets = state.packets
                self.stats.video_dropped = state.dropped
            else:
                self.stats.audio_packets = state.packets

    def _start(self, size: tuple[int, int]) -> None:
        self._out, self._tracks = self._open(size)
        for waiting in self._pending:
            self._write(self._out, self._tracks, waiting)
        self._pending.clear()

    def _open(self, size: tuple[int, int]) -> tuple[OutputContainer, dict[str, TrackState]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        out = av.open(str(self.path), "w", format=self.format, container_options=self.options)
        tracks: dict[str, TrackState] = {}
        if self.video_codec:
            stream = out.add_mux_stream(self.video_codec, rate=30, width=size[0], height=size[1])
            stream.time_base = Fraction(1, 90000)
            tracks["video"] = TrackState(stream=stream, clock_rate=90000)
        if self.audio:
            stream = out.add_stream_from_template(opus_template())
            tracks["audio"] = TrackState(stream=stream, clock_rate=48000, waiting_for_key=False)
        return out, tracks

    def _size_from(self, pending: list[EncodedFrame]) -> tuple[int, int] | None:
        if self.video_codec is None:
            return DEFAULT_SIZE
        frame = pending[-1]
        if frame.kind == "video" and frame.keyframe:
            size = picture_size(self.video_codec, frame.data)
            if size:
                return size
        if pending[-1].arrival - pending[0].arrival > MAX_WAIT_FOR_KEYFRAME:
            return DEFAULT_SIZE  # no usable keyframe: record the audio at least
        return None

    def _write(
        self, out: OutputContainer, tracks: dict[str, TrackState], frame: EncodedFrame
    ) -> None:
        state = tracks.get(frame.kind)
        if state is None:
            return  # a track that was not expected (renegotiation); ignored
        if self._origin is None:
            # The file's time 0 is the first frame of either track; the records
            # keep where that lies on the session's clock.
            self._origin = frame.arrival
            self.stats.first_media_offset = max(frame.arrival - self.t0, 0.0)
            try:
                write_start(self.note, self.stats.first_media_offset)
            except OSError as exc:  # the file itself may still be written
                log.warning("no start note for %s: %s", self.note.name, exc)
        if state.base is None:
            offset = max(frame.arrival - self._origin, 0.0)
            state.base = round(offset * frame.clock_rate) - frame.timestamp
        if state.waiting_for_key:
            if not frame.keyframe:
                state.dropped += 1
                if frame.kind == "video":
                    self.stats.video_dropped = state.dropped  # read live by /metrics
                return
            state.waiting_for_key = False
        if frame.kind == "video" and frame.keyframe:
            # Asked for (the start, a gap, a lost frame) and come: stop asking.
            # Left set, the recorder asked for a keyframe every 0.5 s for the
            # rest of the leg after its first gap.
            self.needs_keyframe = False
        # A gap in the video's time is no loss: a paused sender (a stalled
        # camera, the weak-link stills at one frame a second) lost nothing, and
        # its next frame refers to the last one here. Lost frames are the
        # assembler's to tell (``media/assembler.py``: a hole, a picture id's
        # jump), which leaves them out and asks for a keyframe. A gap over
        # 0.5 s asked for one too: every 2 s in the stills, each one a
        # browser's pacer may drop what it holds for.
        pts = state.base + frame.timestamp
        if pts <= state.last_pts:
            # aiortc hands over frames in order; equal timestamps (a repeated
            # frame) would make the muxer fail, so nudge by one tick.
            pts = state.last_pts + 1
        packet = av.Packet(frame.data)
        packet.stream = state.stream
        packet.time_base = Fraction(1, frame.clock_rate)
        packet.pts = packet.dts = pts
        if frame.kind == "audio":
            packet.duration = OPUS_FRAME
        packet.is_keyframe = frame.keyframe
        out.mux(packet)
        state.last_pts = pts
        state.packets += 1
        # Kept current (not only at the end) for /metrics; one int per frame.
        if frame.kind == "video":
            self.stats.video_packets = state.packets
        else:
            self.stats.audio_packets = state.packets
