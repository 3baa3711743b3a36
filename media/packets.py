"""The lean recording path: packets kept as they arrive, frames muxed off the loop.

The way Janus's ``.mjr`` files work: while a leg runs, the event loop only
decrypts and keeps each RTP packet's payload (``tap.RtpTap``); every
``BATCH_SECONDS`` the packets go to the process's writer thread (one for every
leg), which appends each leg's batch, in one write, to its crash-safe packet log
(the ``.partial`` file: a short header, then one record per packet), puts frames
together (``FrameAssembler``: reordering, retransmissions, VP8/H.264
depayloading) and muxes them with PyAV into the final container, written beside
it as ``.muxing``. At the end of the leg only the last batch remains: the muxer
writes its index and duration, the file takes its final name, and the packet
log goes. After a crash, ``convert`` makes the final file from the packet log
alone (``Recorder.recover``).

Measured before this path (``tests/bench/recording.py``, py-spy, 6 streams):
70 % of the recorder's busy time was aiortc's per-packet path on the loop
(asyncio queue, coroutine chain, RTP parse, jitter buffer), a quarter of it the
hand-over of each frame to the receiver's decoder thread (``Queue.put``: a
lock and a wake-up per frame) and back (``run_coroutine_threadsafe``); SRTP
decryption 18 %; reading the sockets 11 %; muxing under 2 %.

Record layout (little-endian): arrival (float64, ``time.monotonic()``),
payload length (uint16), flags (uint8: 1 audio, 2 marker), RTP sequence number
(uint16), RTP timestamp (uint32), then the payload. A torn last record (a kill
in the middle of a write) is ignored.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import queue
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import av

from media.assembler import FrameAssembler
from media.finalize import FinishedFile, final_name, sha256_of, start_note
from media.seam import EncodedFrame, KeptPacket
from media.writer import CONTAINER_FOR, FrameMuxer, WriterStats

log = logging.getLogger(__name__)

MAGIC = b"TCPKT1\n"
RECORD = struct.Struct("<dHBHI")
AUDIO, MARKER = 1, 2
# The final container, written progressively: nothing live about it (the packet
# log is what survives a crash), so the muxer buffers its writes, and at the
# end writes the Cues (WebM) or the moov (MP4) and the duration.
FINAL_OPTIONS: dict[str, dict[str, str]] = {"webm": {}, "mp4": {}}


def muxing_name(partial: Path) -> Path:
    """``x.webm.partial`` -> ``x.webm.muxing`` (the final file while it is made)."""
    return final_name(partial).with_name(final_name(partial).name + ".muxing")


def is_packet_log(path: Path) -> bool:
    """Whether ``path`` is a packet log (else a container written live, as before)."""
    try:
        with path.open("rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class Converter:
    """Packets in, muxed frames out: both tracks of one leg (blocking; one thread)."""

    def __init__(self, partial: Path, stats: WriterStats, t0: float) -> None:
        self.stats = stats
        self.video = FrameAssembler(stats.video_codec, "video") if stats.video_codec else None
        self.audio = FrameAssembler("opus", "audio") if stats.audio_codec else None
        if self.video is not None:
            stats.video_losses = self.video.losses  # the same list, kept current
        self.muxer = FrameMuxer(
            muxing_name(partial),
            stats=stats,
            t0=t0,
            options=FINAL_OPTIONS[stats.format],
            note=partial,
        )

    def add(self, packets: list[KeptPacket]) -> None:
        """Take packets, mux the frames they complete (both tracks, in arrival order)."""
        for arrival, audio, marker, seq, ts, payload in packets:
            track = self.audio if audio else self.video
            if track is not None:
                track.add(arrival, marker, seq, ts, payload)
        self._mux(final=False)

    def close(self) -> None:
        """Mux what is left and close the container."""
        self._mux(final=True)
        self.muxer.close()

    def _mux(self, *, final: bool) -> None:
        frames: list[EncodedFrame] = []
        for track in (self.video, self.audio):
            if track is not None:
                frames += track.drain(final)
        frames.sort(key=lambda f: f.arrival)  # stable: each track keeps its order
        for frame in frames:
            self.muxer.add(frame)
        if self.video is not None:
            self.stats.video_lost = self.video.lost_frames
            self.stats.video_losses_full = self.video.losses_full
            if self.video.broken:
                self.muxer.needs_keyframe = True  # frames are skipped until one comes


def _header(stats: WriterStats, t0: float) -> bytes:
    meta = {"video_codec": stats.video_codec, "audio_codec": stats.audio_codec, "t0": t0}
    return MAGIC + json.dumps(meta).encode() + b"\n"


def read_log(path: Path) -> tuple[dict[str, Any], Iterator[list[KeptPacket]]]:
    """A packet log's header and its packets, in batches (a torn tail ends them)."""
    fh = path.open("rb")
    if fh.readline() != MAGIC:
        fh.close()
        raise ValueError(f"{path.name} is not a packet log")
    meta: dict[str, Any] = json.loads(fh.readline())

    def batches() -> Iterator[list[KeptPacket]]:
        with fh:
            data = fh.read(1 << 22)
            at, buffered = 0, data
            while True:
                batch: list[KeptPacket] = []
                while len(buffered) - at >= RECORD.size:
                    arrival, size, flags, seq, ts = RECORD.unpack_from(buffered, at)
                    end = at + RECORD.size + size
                    if end > len(buffered):
                        break
                    payload = buffered[at + RECORD.size : end]
                    batch.append(
                        (arrival, bool(flags & AUDIO), bool(flags & MARKER), seq, ts, payload)
                    )
                    at = end
                if batch:
                    yield batch
                more = fh.read(1 << 22)
                if not more:
                    return
                buffered, at = buffered[at:] + more, 0

    return meta, batches()


def _write_records(fh: BinaryIO, packets: list[KeptPacket]) -> None:
    pack = RECORD.pack
    parts: list[bytes] = []
    for arrival, audio, marker, seq, ts, payload in packets:
        parts.append(pack(arrival, len(payload), audio | (marker << 1), seq, ts))
        parts.append(payload)
    fh.write(b"".join(parts))


class WriterThread:
    """The thread that writes the packets of every leg of one recorder.

    A thread per leg woke ten times a second each (a lock, a wake-up and a
    fight for the GIL with the event loop, per leg); one thread takes every
    leg's batch in turn, in the order they were handed over, so each leg's
    packets still reach its file in order and in one write per batch. The
    recorder owns one (``Recorder.writer_thread``); a writer made on its own
    gets one that ends with it (``single``).
    """

    def __init__(self, *, single: bool = False) -> None:
        """A thread started with the first item handed over."""
        self._queue: queue.SimpleQueue[tuple[PacketWriter, object]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._single = single

    def put(self, writer: PacketWriter, item: object) -> None:
        """Hand ``item`` (``_OPEN``, a batch, or ``_CLOSE``) over for ``writer``."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rec-writer", daemon=True)
                self._thread.start()
        self._queue.put((writer, item))

    def backlog(self) -> int:
        """Items waiting for the thread."""
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            writer, item = self._queue.get()
            # Each leg's work runs in that leg's context (its log lines).
            writer._context.run(writer._step, item)
            if self._single and item is _CLOSE:
                return


_OPEN, _CLOSE = object(), object()


class PacketWriter:
    """One leg's packet log and final file, fed from the event loop, written on a thread.

    What the recorder writes through (``path``, ``format``, ``stats``,
    ``failed``, ``needs_keyframe``, ``flush``, ``close``); ``keep`` takes
    packets from ``tap.RtpTap``. The writing happens on the recorder's writer
    thread (``WriterThread``), or on one of its own.
    """

    def __init__(
        self,
        path: Path,
        *,
        video_codec: str | None,
        audio: bool,
        t0: float,
        thread: WriterThread | None = None,
    ) -> None:
        """Prepare the packet log ``path`` (the ``.partial`` file).

        Args:
            path: the ``.partial`` file (the packet log).
            video_codec: ``"vp8"``, ``"h264"`` or None for audio only.
            audio: whether an Opus track is expected.
            t0: ``time.monotonic()`` of the recording's start.
            thread: the writer thread shared with other legs (None: one of its own).
        """
        if video_codec not in CONTAINER_FOR:
            raise ValueError(f"unsupported video codec {video_codec!r}")
        self.path = path
        self._writer_thread = thread or WriterThread(single=True)
        self.video_codec = video_codec
        self.audio = audio
        self.t0 = t0
        self.format = CONTAINER_FOR[video_codec]
        self.stats = WriterStats(
            path=path,
            format=self.format,
            video_codec=video_codec,
            audio_codec="opus" if audio else None,
        )
        self.needs_keyframe = video_codec is not None
        self.failed = threading.Event()
        self._batch: list[KeptPacket] = []
        # The tap calls this for every packet: a bound list method, nothing more.
        self.keep = self._batch.append
        self._context = contextvars.copy_context()
        self._fh: BinaryIO | None = None
        self._converter: Converter | None = None
        self._closed = threading.Event()
        self._writer_thread.put(self, _OPEN)

    def flush(self) -> None:
        """Hand the packets kept since the last flush to the thread."""
        if self._batch:
            batch = self._batch[:]
            self._batch.clear()
            self._writer_thread.put(self, batch)

    def backlog(self) -> int:
        """Batches handed over and not yet written, every leg's (the thread is shared)."""
        return self._writer_thread.backlog()

    def close(self) -> WriterStats:
        """Flush, finish the final container; blocks until the thread is done with it."""
        self.flush()
        self._writer_thread.put(self, _CLOSE)
        self._closed.wait()
        return self.stats

    def _step(self, item: object) -> None:
        # On the writer thread: one thing handed over for this leg.
        if item is _CLOSE:
            try:
                if self._fh is not None:
                    self._fh.close()
                if self._converter is not None:
                    self._converter.close()
            except Exception as exc:
                log.exception("recording writer failed to close: %s", self.path.name)
                self.stats.errors.append(repr(exc))
            finally:
                self._closed.set()
            return
        if self.failed.is_set():
            return  # the recording failed; the call goes on, the batches are dropped
        try:
            if item is _OPEN:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Unbuffered: each batch reaches the file in one write (a crash
                # loses at most the batch being handed over).
                self._fh = open(self.path, "wb", buffering=0)  # closed at _CLOSE
                self._fh.write(_header(self.stats, self.t0))
                self._converter = Converter(self.path, self.stats, self.t0)
                return
            assert self._fh is not None and self._converter is not None  # noqa: S101 - opened first
            batch = cast(list[KeptPacket], item)
            _write_records(self._fh, batch)
            self._converter.add(batch)
            self.needs_keyframe = self._converter.muxer.needs_keyframe
        except Exception as exc:  # the recording fails; the call must go on
            log.exception("recording writer failed: %s", self.path.name)
            self.stats.errors.append(repr(exc))
            self.failed.set()


def finish(stats: WriterStats) -> FinishedFile:
    """The leg's final file from what ``PacketWriter`` made; the packet log goes.

    Blocking: a rename and the file's SHA-256.
    """
    if stats.errors or not muxing_name(stats.path).exists():
        return convert(stats.path)
    return _publish(stats)


def convert(partial: Path) -> FinishedFile:
    """Make the final file from a packet log alone (after a crash). Blocking."""
    meta, batches = read_log(partial)
    video_codec = meta.get("video_codec")
    fmt = CONTAINER_FOR[video_codec]
    stats = WriterStats(
        path=partial,
        format=fmt,
        video_codec=video_codec,
        audio_codec=meta.get("audio_codec"),
    )
    muxing_name(partial).unlink(missing_ok=True)  # a crash's half-made container
    # The same offset the leg noted while it ran (same arrivals, same t0).
    converter = Converter(partial, stats, float(meta.get("t0", 0.0)))
    for batch in batches:
        converter.add(batch)
    converter.close()
    if stats.errors:
        raise RuntimeError("; ".join(stats.errors))
    return _publish(stats)


def _publish(stats: WriterStats) -> FinishedFile:
    partial = stats.path
    muxing = muxing_name(partial)
    target = final_name(partial)
    with av.open(str(muxing), "r", format="mp4" if stats.format == "mp4" else "matroska") as src:
        duration = (src.duration or 0) / 1_000_000
        video = next((s.codec_context.name for s in src.streams.video), None)
        audio = next((s.codec_context.name for s in src.streams.audio), None)
    os.replace(muxing, target)
    partial.unlink()
    start_note(partial).unlink(missing_ok=True)
    return FinishedFile(
        path=target,
        format=stats.format,
        video_codec=video,
        audio_codec=audio,
        duration=duration,
        video_packets=stats.video_packets,
        audio_packets=stats.audio_packets,
        size=target.stat().st_size,
        sha256=sha256_of(target),
    )
