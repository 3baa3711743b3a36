"""The wire between the web process and a media worker (``media.worker``).

One JSON object per line over a stream socket (a Unix socket for the workers
``teleconsult serve`` starts, TCP for ``teleconsult media-worker``). The web
process sends requests ``{"id", "op", ...}``; the worker answers each with
``{"id", "ok": value}`` or ``{"id", "error": message}`` and, unasked, sends
events: ``{"event": "finished", "result"}`` when a leg ended by itself and
``{"event": "stats", "pid", "legs"}`` every ``STATS_SECONDS``.

Paths travel relative to the recordings directory: a worker on another machine
mounts the shared recordings volume wherever it likes.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from media.finalize import FinishedFile
from media.host import LegCounts
from media.leg import LegResult, RecordingKey

# Big enough for any SDP (a few kB) and the stats of hundreds of legs.
LINE_LIMIT = 16 * 1024 * 1024
STATS_SECONDS = 1.0


def dumps(message: dict[str, Any]) -> bytes:
    """One message as a line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def key_to_wire(key: RecordingKey) -> list[Any]:
    """A recording key as JSON."""
    return [key.consultation_id, key.participant_id, key.part]


def key_from_wire(value: Any) -> RecordingKey:
    """A recording key from JSON (ValueError if malformed)."""
    if not (isinstance(value, list) and len(value) == 3):
        raise ValueError("a key is [consultation_id, participant_id, part]")
    cid, pid, part = value
    if not (isinstance(cid, str) and isinstance(pid, str) and isinstance(part, int)):
        raise ValueError("a key is [str, str, int]")
    return RecordingKey(cid, pid, part)


def relative(path: Path, root: Path) -> str:
    """``path`` under ``root``, as sent."""
    return str(path.relative_to(root))


def result_to_wire(result: LegResult, root: Path) -> dict[str, Any]:
    """A finished leg as JSON."""
    file = result.file
    return {
        "key": key_to_wire(result.key),
        "started_at": result.started_at.isoformat(),
        "first_media_offset": result.first_media_offset,
        "error": result.error,
        "file": None
        if file is None
        else {
            "path": relative(file.path, root),
            "format": file.format,
            "video_codec": file.video_codec,
            "audio_codec": file.audio_codec,
            "duration": file.duration,
            "video_packets": file.video_packets,
            "audio_packets": file.audio_packets,
            "size": file.size,
            "sha256": file.sha256,
        },
    }


def result_from_wire(value: dict[str, Any], root: Path) -> LegResult:
    """A finished leg from JSON, its file placed under ``root``."""
    file = value.get("file")
    return LegResult(
        key=key_from_wire(value["key"]),
        started_at=datetime.fromisoformat(value["started_at"]),
        first_media_offset=value.get("first_media_offset"),
        error=value.get("error"),
        file=None
        if file is None
        else FinishedFile(
            path=root / file["path"],
            format=file["format"],
            video_codec=file["video_codec"],
            audio_codec=file["audio_codec"],
            duration=float(file["duration"]),
            video_packets=int(file["video_packets"]),
            audio_packets=int(file["audio_packets"]),
            size=int(file["size"]),
            sha256=file["sha256"],
        ),
    )


def counts_to_wire(key: RecordingKey, counts: LegCounts) -> list[Any]:
    """One leg's frame counts as JSON."""
    return [*key_to_wire(key), counts.video_written, counts.audio_written, counts.video_lost]


def counts_from_wire(value: list[Any]) -> tuple[RecordingKey, LegCounts]:
    """One leg's frame counts from JSON."""
    key = key_from_wire(value[:3])
    return key, LegCounts(
        video_written=int(value[3]), audio_written=int(value[4]), video_lost=int(value[5])
    )
