"""What the web process asks of whatever hosts its recording legs.

Two hosts: the in-process ``media.recorder.Recorder`` (``media_workers = 0``)
and ``media.pool.WorkerPool``, which places each consultation's legs on one of
several media worker processes (``media.worker``). ``RecordingService`` and
``/metrics`` speak to either through ``LegHost``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from media.leg import LegResult, RecordingKey
    from media.repair import Repaired


@dataclass(frozen=True, kw_only=True, slots=True)
class LegFile:
    """The file a running leg writes, as the records note it at the start."""

    path: Path  # the ``.partial`` file, absolute (under the host's directory)
    container: str
    video_codec: str | None
    audio_codec: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerLoad:
    """How many legs one worker (or the in-process recorder) carries."""

    name: str
    pid: int | None
    legs: int
    alive: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class LegCounts:
    """A running leg's frame counts so far."""

    video_written: int
    audio_written: int
    video_lost: int


@dataclass(frozen=True, kw_only=True, slots=True)
class KeptMedia:
    """What a leg kept without a file carries (its file failed; the call goes on)."""

    video_codec: str | None
    audio: bool


class LegHost(Protocol):
    """The recorder's interface as the web process uses it."""

    directory: Path
    on_finished: Callable[[LegResult], None] | None
    # Called with the part that ended when a leg's file could not be written;
    # the leg goes on (connected, relayed) without a file until resumed or stopped.
    on_writing_failed: Callable[[LegResult], None] | None

    def partial_path(self, key: RecordingKey, fmt: str) -> Path: ...

    async def start(self, key: RecordingKey, offer_sdp: str, *, now: datetime) -> str: ...

    def leg_file(self, key: RecordingKey) -> LegFile: ...

    async def add_candidate(
        self, key: RecordingKey, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None: ...

    async def stop(
        self, key: RecordingKey, *, drain: bool = True, settle: bool = False
    ) -> LegResult | None: ...

    async def relay_offer(self, key: RecordingKey, viewer: str) -> str: ...

    async def relay_answer(self, key: RecordingKey, viewer: str, answer_sdp: str) -> bool: ...

    async def relay_close(self, consultation_id: str, viewer: str) -> None: ...

    def forget(self, key: RecordingKey) -> None: ...

    async def kept_media(self, key: RecordingKey) -> KeptMedia | None: ...

    async def resume(self, key: RecordingKey, new_key: RecordingKey, *, now: datetime) -> None: ...

    async def close(self) -> list[LegResult]: ...

    def recover(self, only: Callable[[Path], bool] | None = None) -> list[Repaired]: ...

    def loads(self) -> list[WorkerLoad]: ...

    def leg_counts(self) -> dict[RecordingKey, LegCounts]: ...
