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
from aiortc.codecs.h264 import H264PayloadDescriptor
from aiortc.codecs.vpx import VpxPayloadDescriptor

from media.finalize import FinishedFile, final_name, sha256_of, start_note
from media.rtp import pictures_skipped, starts_keyframe
from media.seam import EncodedFrame, KeptPacket, is_keyframe
from media.writer import CONTAINER_FOR, FrameMuxer, WriterStats

log = logging.getLogger(__name__)

MAGIC = b"TCPKT1\n"
RECORD = struct.Struct("<dHBHI")
AUDIO, MARKER = 1, 2
# How long a missing packet is waited for (NACK and retransmission) before the
# frame it belongs to is given up. Each lost frame costs the frames up to the
# next keyframe, so the file waits long (at 10 % loss and 300 ms a packet may
# need three requests); only the file's writing waits, not the live call.
REORDER_SECONDS = 2.0
# Packets sent before the first one that arrived, waited for at the start.
START_SLACK = 16
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


class FrameAssembler:
    """Puts one track's RTP payloads back into frames, in sequence order.

    A packet may arrive late (reordered or retransmitted after a NACK); a hole
    is waited for ``REORDER_SECONDS`` of newer arrivals, then the frame it
    belongs to is dropped and the next frame that begins cleanly is taken.
    Video frames are whole only with their first packet (VP8: start of
    partition 0; H.264: a NAL's first fragment after a hole) and their marker
    packet.
    """

    def __init__(self, codec: str, kind: str) -> None:
        """An assembler for ``codec`` ("vp8", "h264", "opus") of ``kind``."""
        self.codec = codec
        self.mime = f"{kind}/{codec}"
        self.kind = kind
        self.audio = kind == "audio"
        self.clock_rate = 48000 if self.audio else 90000
        self.pending: dict[int, tuple[float, bool, int, bytes]] = {}
        self.next: int | None = None
        self.high = 0
        self.newest = 0.0
        self.frame: list[tuple[float, bytes]] = []
        self.frame_ts = 0
        self.after_gap = True  # the first frame must begin with its first packet
        self.ts_raw: int | None = None
        self.ts_ext = 0
        self.lost_frames = 0
        self.skipped_ts: int | None = None
        self.last_arrival = float("-inf")
        # A video frame went missing: the frames after it may reference it
        # (a lost keyframe breaks every frame up to the next one: FFmpeg
        # refuses them, libvpx draws garbage), so none is written until a
        # keyframe comes; ``broken`` stays set until then.
        self.broken = False
        self.picture_id: int | None = None  # VP8's, of the last frame begun

    def add(self, arrival: float, marker: bool, seq: int, ts: int, payload: bytes) -> None:
        """Take one packet (no frame comes out before ``drain``)."""
        if self.next is None:
            # The first packet to arrive need not be the first sent: a few
            # before it are waited for (then given up like any hole).
            self.high = seq + (1 << 20)
            self.next = self.high - START_SLACK
            ext = self.high
        else:
            ext = self.high + ((seq - self.high + 0x8000) & 0xFFFF) - 0x8000
            if ext > self.high:
                self.high = ext
        if ext < self.next:
            return  # already taken (a duplicate retransmission) or given up
        self.pending[ext] = (arrival, marker, ts, payload)
        if arrival > self.newest:
            self.newest = arrival

    def drain(self, final: bool = False) -> list[EncodedFrame]:
        """The frames that are complete (``final``: give up every hole)."""
        out: list[EncodedFrame] = []
        pending = self.pending
        while pending:
            assert self.next is not None  # noqa: S101 - set with the first packet
            item = pending.pop(self.next, None)
            if item is None:
                lowest = min(pending)
                if not final and self.newest - pending[lowest][0] < REORDER_SECONDS:
                    break  # a retransmission may still fill the hole
                self._skip_to(lowest)
                continue
            self.next += 1
            arrival, marker, ts, payload = item
            if not payload:
                continue  # a FEC packet's place in the sequence (``media/ulpfec.py``)
            if self.audio:
                self._emit(out, ts, [(arrival, payload)])
                continue
            if self.frame and ts != self.frame_ts:
                # The next number is another frame's, and this frame's last
                # packet (its marker) never came: the sender dropped the rest of
                # it unsent. libwebrtc's pacer does, when a keyframe is queued
                # (it drops the stream's queued packets before they get their
                # numbers: no hole). Written, it decodes to a broken picture
                # (the frame before last's, in township calls). The keyframe
                # comes next, here: no keyframe is asked for (a request would
                # make the browser flush the frame then in flight in turn, and
                # so on: a loop of keyframes on a 1 Mbit/s uplink).
                self.lost_frames += 1
                self.skipped_ts = self.frame_ts
                self.frame = []
                if not starts_keyframe(self.mime, payload):
                    self.broken = True
            try:
                start, data = self._depayload(payload)
            except ValueError:
                self.frame = []
                self.after_gap = True
                continue
            if not self.frame:
                if self.after_gap and not start:
                    # The middle of a frame whose start was lost: counted once
                    # (by the picture id's jump where there is one).
                    first = ts != self.skipped_ts
                    self._lost(1 if first and self.picture_id is None else 0, ts=ts)
                    continue
                self.after_gap = False
                self.frame_ts = ts
            self.frame.append((arrival, data))
            if marker:
                self._emit(out, ts, self.frame)
                self.frame = []
        if final and self.frame:
            self.lost_frames += 1
            self.frame = []
        return out

    def _skip_to(self, seq: int) -> None:
        """Give up the hole before ``seq``; the frame in hand, if any, with it."""
        if self.frame:  # a frame given up, part of it in hand
            self._lost(1, ts=self.frame_ts)
        elif self.codec == "h264":
            self._lost(0)  # a whole frame may have gone (no picture id)
        self.frame = []
        self.after_gap = True
        self.next = seq

    def _lost(self, frames: int, *, ts: int | None = None) -> None:
        """``frames`` video frames went missing (a partial frame given up, a frame
        whose start was lost, a VP8 picture-id jump): none is written until the
        next keyframe (``broken``). ``ts``: the lost frame's timestamp, so that
        its later packets are not counted again. Audio frames stand alone."""
        self.lost_frames += frames
        if ts is not None:
            self.skipped_ts = ts
        self.broken = not self.audio

    def _depayload(self, payload: bytes) -> tuple[bool, bytes]:
        if self.codec == "vp8":
            vp8, data = VpxPayloadDescriptor.parse(payload)
            start = bool(vp8.partition_start) and vp8.partition_id == 0
            picture_id = vp8.picture_id
            if start and picture_id is not None:
                # Chrome numbers its frames (7 or 15 bits): a jump is a frame
                # lost whole, packets and all, which no hole in the sequence
                # numbers tells apart from padding.
                last = self.picture_id
                if last is not None and (skipped := pictures_skipped(last, picture_id)):
                    self._lost(skipped)
                self.picture_id = picture_id
            return start, data
        h264, data = H264PayloadDescriptor.parse(payload)
        return bool(h264.first_fragment), data

    def _emit(self, out: list[EncodedFrame], ts: int, parts: list[tuple[float, bytes]]) -> None:
        data = parts[0][1] if len(parts) == 1 else b"".join(p[1] for p in parts)
        keyframe = is_keyframe(self.codec, data)
        if self.broken and not self.audio:
            if not keyframe:
                self.lost_frames += 1
                return
            self.broken = False
        # RTP timestamps wrap at 2**32; the muxer wants them growing.
        if self.ts_raw is None:
            self.ts_ext = 0
        else:
            self.ts_ext += ((ts - self.ts_raw + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        self.ts_raw = ts
        # A frame whose first packet was resent arrives after the frames behind
        # it; its place among the other track's frames must not move it ahead
        # of them (a VP8 frame decoded out of order breaks the frames up to the
        # next keyframe), so a track's arrivals never go back.
        self.last_arrival = max(self.last_arrival, parts[0][0])
        out.append(
            EncodedFrame(
                data=data,
                timestamp=self.ts_ext,
                codec=self.codec,
                kind=self.kind,
                clock_rate=self.clock_rate,
                keyframe=keyframe,
                arrival=self.last_arrival,
            )
        )


class Converter:
    """Packets in, muxed frames out: both tracks of one leg (blocking; one thread)."""

    def __init__(self, partial: Path, stats: WriterStats, t0: float) -> None:
        self.stats = stats
        self.video = FrameAssembler(stats.video_codec, "video") if stats.video_codec else None
        self.audio = FrameAssembler("opus", "audio") if stats.audio_codec else None
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
