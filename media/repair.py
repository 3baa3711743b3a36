"""Repair of what a leg left unfinished: its ``.partial`` file made final.

A ``.partial`` file is a leg's packet log (``packets.py``) or, from an earlier
version, a container written live. A killed server leaves them behind, and so
does a lost media worker: ``recover`` finalizes every one of them at start-up
(``Recorder.recover``, ``WorkerPool.recover``), ``repair`` the one a lost
worker's leg was writing. The same finalize either way, so a repaired file is
the file the leg would have finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from media import packets
from media.finalize import FinishedFile, finalize, leftovers, read_start

if TYPE_CHECKING:
    from media.leg import RecordingKey

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Repaired:
    """One ``.partial`` file a killed server left, after the repair."""

    partial: Path
    file: FinishedFile | None
    error: str | None
    # Where the file's time 0 lay after its leg's start (None: not noted).
    first_media_offset: float | None


def partial_file(directory: Path, key: RecordingKey, fmt: str) -> Path:
    """Where a leg's file is written while recording, under ``directory``."""
    return directory / key.consultation_id / (key.filename(fmt) + ".partial")


def finish_partial(partial: Path) -> FinishedFile:
    """Make a ``.partial`` file a leg left unfinished into its final file (blocking):
    a packet log is muxed; a container written live by an earlier version is remuxed."""
    if packets.is_packet_log(partial):
        return packets.convert(partial)
    return finalize(partial)


def repair(partial: Path) -> Repaired:
    """Finalize one ``.partial`` file a lost worker (or killed server) left.

    Blocking. The result carries the first media offset noted beside the file,
    so that the records can place it on the session's clock.
    """
    offset = read_start(partial)
    try:
        finished = finish_partial(partial)
        return Repaired(partial=partial, file=finished, error=None, first_media_offset=offset)
    except Exception as exc:
        log.exception("could not repair %s", partial.name)
        return Repaired(partial=partial, file=None, error=repr(exc), first_media_offset=offset)


def recover(directory: Path, only: Callable[[Path], bool] | None = None) -> list[Repaired]:
    """Repair every ``.partial`` file under ``directory`` that ``only`` chooses.

    Blocking (call it on a worker thread, at start-up, before new legs).

    Args:
        directory: the recordings' directory (one folder per consultation).
        only: which files to repair (None: all); another process sharing
            the directory may still be writing the others.
    """
    return [repair(partial) for partial in leftovers(directory) if only is None or only(partial)]
