"""Turning a ``.partial`` recording into a finished, seekable file.

A stream-copy remux (no decode, no encode) writes what the live file could not:
the duration and the seek index (WebM Cues in front; MP4 a regular ``moov`` with
``faststart``). The same function repairs what a killed server left behind.
Everything here blocks: callers run it on a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import av

log = logging.getLogger(__name__)

PARTIAL = ".partial"
# Beside a ``.partial`` file while it is written: where its time 0 lies after the
# leg's start (seconds), so that a file repaired after a crash still gets its
# place on the session's clock (the file itself holds only relative times).
START_NOTE = ".start"


@dataclass(frozen=True, kw_only=True)
class FinishedFile:
    """A finished recording file and what the records keep about it."""

    path: Path
    format: str
    video_codec: str | None
    audio_codec: str | None
    duration: float
    video_packets: int
    audio_packets: int
    size: int
    sha256: str


def final_name(partial: Path) -> Path:
    """``x.webm.partial`` -> ``x.webm``."""
    if partial.suffix != PARTIAL:
        raise ValueError(f"not a partial file: {partial.name}")
    return partial.with_suffix("")


def start_note(partial: Path) -> Path:
    """``x.webm.partial`` -> ``x.webm.partial.start`` (the first media offset)."""
    return partial.with_name(partial.name + START_NOTE)


def write_start(partial: Path, first_media_offset: float) -> None:
    """Note where ``partial``'s time 0 lies after its leg's start."""
    start_note(partial).write_text(f"{first_media_offset:.6f}\n", encoding="ascii")


def read_start(partial: Path) -> float | None:
    """The noted first media offset of ``partial`` (None: not noted or unreadable)."""
    try:
        return float(start_note(partial).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def sha256_of(path: Path, chunk: int = 1024 * 1024) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def finalize(partial: Path) -> FinishedFile:
    """Remux ``partial`` into its final name, remove the partial, describe the result.

    Packets that the demuxer cannot read (the torn end of a killed recording)
    end the copy; everything before them is kept.
    """
    target = final_name(partial)
    fmt = "mp4" if target.suffix == ".mp4" else "webm"
    tmp = target.with_name(target.name + ".tmp")
    options = {"movflags": "+faststart"} if fmt == "mp4" else {"cues_to_front": "1"}
    counts = {"video": 0, "audio": 0}
    ends: list[float] = []
    # The .partial name hides the format from FFmpeg's guess: name the demuxer.
    demuxer = "mp4" if fmt == "mp4" else "matroska"
    with (
        av.open(str(partial), "r", format=demuxer) as src,
        av.open(str(tmp), "w", format=fmt, container_options=options) as dst,
    ):
        mapping = {}
        for stream in src.streams:
            if stream.type in ("video", "audio"):
                mapping[stream.index] = dst.add_stream_from_template(stream)
        last_end: dict[int, float] = {}
        try:
            for packet in src.demux(*[src.streams[i] for i in mapping]):
                if packet.dts is None or packet.size == 0:
                    continue
                out_stream = mapping[packet.stream.index]
                if packet.pts is not None and packet.time_base is not None:
                    end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    last_end[packet.stream.index] = max(last_end.get(packet.stream.index, 0), end)
                counts[packet.stream.type] += 1
                packet.stream = out_stream
                dst.mux(packet)
        except av.FFmpegError as exc:  # a torn tail after a crash
            log.warning("recording %s: copy stopped at a damaged packet: %s", partial.name, exc)
        ends = list(last_end.values())
        video = next((s.codec_context.name for s in src.streams.video), None)
        audio = next((s.codec_context.name for s in src.streams.audio), None)
    tmp.replace(target)
    partial.unlink()
    start_note(partial).unlink(missing_ok=True)
    with av.open(str(target), "r") as check:
        duration = (check.duration or 0) / 1_000_000 or max(ends, default=0.0)
    return FinishedFile(
        path=target,
        format=fmt,
        video_codec=video,
        audio_codec=audio,
        duration=duration,
        video_packets=counts["video"],
        audio_packets=counts["audio"],
        size=target.stat().st_size,
        sha256=sha256_of(target),
    )


def describe(target: Path) -> FinishedFile:
    """What the records keep about an already finished file (its row was not
    stored when it was finished, e.g. the database's disk was full)."""
    counts = {"video": 0, "audio": 0}
    with av.open(str(target), "r") as src:
        for packet in src.demux():
            if packet.size and packet.stream.type in counts:
                counts[packet.stream.type] += 1
        duration = (src.duration or 0) / 1_000_000
        video = next((s.codec_context.name for s in src.streams.video), None)
        audio = next((s.codec_context.name for s in src.streams.audio), None)
    return FinishedFile(
        path=target,
        format="mp4" if target.suffix == ".mp4" else "webm",
        video_codec=video,
        audio_codec=audio,
        duration=duration,
        video_packets=counts["video"],
        audio_packets=counts["audio"],
        size=target.stat().st_size,
        sha256=sha256_of(target),
    )


def leftovers(directory: Path) -> list[Path]:
    """Every ``.partial`` recording under ``directory`` (what a crash left)."""
    if not directory.exists():
        return []
    return sorted(directory.rglob(f"*{PARTIAL}"))
