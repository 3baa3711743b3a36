"""Legs kept without a file: a full disk ends a part of the recording, not the call.

When a leg's file cannot be written (a full disk, EIO, a permission), the
recorder keeps the leg's connection and relay: the participant stays in the
live call, which matters more than the file. ``KeptLegs`` holds such legs for
``RecordingService``: the part is stored with what was written and the room is
told why recording stopped; while any leg waits, a watcher looks at the disk
now and then (the same verdict as ``/readyz``) and each kept leg records again,
as its participant's next part, once there is room. A part that fails again
soon after it began is a strike: the wait before the next try doubles.

A participant's leg is in one of two maps: the service's ``active`` while it
records, ``KeptLegs.legs`` while it is kept; ``writing_failed`` moves it here,
``_resume`` back. This is a part of the service kept apart for reading: it
works through the service's recorder, records and listener.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from media.errors import RecordingFailed
from media.leg import LegResult, RecordingKey
from media.repair import finish_partial
from media.space import disk_space
from media.writer import CONTAINER_FOR
from records import store
from records.models import Event
from records.vocab import EventKind
from signaling.workflow.base import Tx

if TYPE_CHECKING:
    from signaling.workflow.recording import RecordingService

log = logging.getLogger(__name__)

# A kept leg records again once the disk passes the same check as ``/readyz``;
# the check runs this often, and after a resumed part failed again within
# RESUME_STABLE seconds the wait doubles up to RESUME_MAX.
RESUME_CHECK_SECONDS = 5.0
RESUME_STABLE = 60.0
RESUME_MAX = 300.0

Slot = tuple[str, str]  # (consultation id, participant id)


@dataclass(kw_only=True)
class Kept:
    """A leg whose file could not be written, kept for the live call."""

    key: RecordingKey
    reason: str
    # The part that ended (its row, and what the recorder made of its file).
    recording_id: str
    result: LegResult
    # time.monotonic() before which no resumption is tried.
    not_before: float = 0.0


class KeptLegs:
    """The legs of a ``RecordingService`` kept without a file, and their resumption."""

    def __init__(
        self, service: RecordingService, *, min_free_bytes: int, check_seconds: float
    ) -> None:
        """Wire the helper.

        Args:
            service: the recording service whose legs these are.
            min_free_bytes: a kept leg records again once the recordings' disk
                has this much free and can be written.
            check_seconds: how often that is checked while a leg waits.
        """
        self.service = service
        self.legs: dict[Slot, Kept] = {}
        self.min_free_bytes = min_free_bytes
        self.check_seconds = check_seconds
        # Consecutive parts of a participant that failed soon after they began.
        self._strikes: dict[Slot, int] = {}
        self._watcher: asyncio.Task[None] | None = None
        # A leg whose file failed before its start was recorded (a disk full at
        # its first write), handled once it is (``started``).
        self._early: dict[Slot, LegResult] = {}

    def __contains__(self, slot: Slot) -> bool:
        return slot in self.legs

    def __iter__(self) -> Iterator[Slot]:
        return iter(list(self.legs))

    def key(self, slot: Slot) -> RecordingKey | None:
        """The kept leg's key (its connection still relays the participant)."""
        kept = self.legs.get(slot)
        return kept.key if kept is not None else None

    def reason(self, slot: Slot) -> str | None:
        """Why the slot's leg is kept (``disk_full``, ``write_failed``), or None."""
        kept = self.legs.get(slot)
        return kept.reason if kept is not None else None

    def started(self, slot: Slot) -> None:
        """The service is done starting the slot's leg (recorded or not): a
        failure of its file that came first is handled now."""
        result = self._early.pop(slot, None)
        if result is not None:
            self.writing_failed(result)

    async def drop(self, slot: Slot) -> None:
        """End a kept leg's connection, if there is one (its part is stored already)."""
        kept = self.legs.pop(slot, None)
        if kept is not None:
            await self.service.recorder.stop(kept.key)

    def forget_strikes(self, slot: Slot) -> None:
        """The participant stopped: a next leg starts with no strikes."""
        self._strikes.pop(slot, None)

    def connection_ended(self, result: LegResult) -> bool:
        """Whether the leg that ended by itself was a kept one (now gone)."""
        slot = (result.key.consultation_id, result.key.participant_id)
        kept = self.legs.get(slot)
        if kept is None or kept.key != result.key:
            return False
        # The page closed it: its part was stored when its file failed.
        del self.legs[slot]
        return True

    async def close(self) -> None:
        """Stop watching the disk (server shutdown)."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    def writing_failed(self, result: LegResult) -> None:
        """The recorder's ``on_writing_failed``: a running leg's file failed."""
        # The leg's file could not be written (a full disk, EIO, a permission).
        # The recorder keeps the leg's connection and relay: the participant
        # stays in the live call, which matters more than the file. Their part
        # is stored with what was written and the room is told why recording
        # stopped; the leg records again (a new part) once the disk has room.
        service = self.service
        slot = (result.key.consultation_id, result.key.participant_id)
        entry = service.active.get(slot)
        if entry is None and slot in service._starting:
            # The recorder answered, and the part's row is not written yet: the
            # failure would be lost, and the pages told "recording" for a leg
            # that writes nothing.
            self._early[slot] = result
            return
        if entry is None or entry[0] != result.key:
            return  # stopped or replaced meanwhile: stop() stored the part
        del service.active[slot]
        reason = failure_reason(result.error)
        strikes = self._strikes.get(slot, 0) + 1
        if (service.clock.now() - result.started_at).total_seconds() >= RESUME_STABLE:
            strikes = 1  # it had recorded a while: not a disk that refuses at once
        self._strikes[slot] = strikes
        wait = min(self.check_seconds * 2 ** (strikes - 1), RESUME_MAX)
        self.legs[slot] = Kept(
            key=result.key,
            reason=reason,
            recording_id=entry[1],
            result=result,
            not_before=time.monotonic() + wait,
        )
        service._spawn(self._store(entry[1], result, reason))
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch_disk())

    async def _store(self, recording_id: str, result: LegResult, reason: str) -> None:
        service = self.service
        try:
            await service._store(recording_id, result, interrupted=True, kept=True, reason=reason)
        except Exception:
            # The records may sit on the same full disk: the pages are told all
            # the same (recover() settles the row at the next start).
            log.exception("recording=%s not stored (recover repairs it at start)", recording_id)
            if service.listener is not None:
                cid, pid = result.key.consultation_id, result.key.participant_id
                await service.listener(cid, pid, "failed", None, kept=True, reason=reason)

    async def _watch_disk(self) -> None:
        # While a leg waits for room, look at the disk now and then (the same
        # verdict as /readyz); every kept leg whose wait is over resumes.
        while self.legs:
            await asyncio.sleep(self.check_seconds)
            due = [slot for slot, k in self.legs.items() if k.not_before <= time.monotonic()]
            if not due:
                continue
            ok, _, _ = await asyncio.to_thread(disk_space, self.service.root, self.min_free_bytes)
            if not ok:
                continue
            for slot in due:
                try:
                    await self._resume(slot)
                except Exception:
                    log.exception("consultation=%s recording not resumed", slot[0])

    async def _resume(self, slot: Slot) -> None:
        """Record a kept leg again as its participant's next part."""
        service = self.service
        kept = self.legs.get(slot)
        media = await service.recorder.kept_media(kept.key) if kept is not None else None
        if kept is None or media is None:
            return
        consultation_id, participant_id = slot
        part = await service.read(
            lambda conn: store.next_recording_part(conn, consultation_id, participant_id)
        )
        key = RecordingKey(consultation_id, participant_id, part)
        video_codec, audio = media.video_codec, media.audio
        container = CONTAINER_FOR[video_codec]
        await self._finish_failed_part(kept, container)
        path = service.recorder.partial_path(key, container).with_suffix("")
        now = service.clock.now()

        # The row first: if the records refuse it (their disk may be full too),
        # the leg stays kept, without a file, and is tried again later.
        def work(tx: Tx) -> tuple[str, Event]:
            rid = store.add_recording(
                tx.conn,
                consultation_id=consultation_id,
                participant_id=participant_id,
                part=part,
                path=str(path.relative_to(service.root)),
                container=container,
                video_codec=video_codec,
                audio_codec="opus" if audio else None,
                started_at=now,
            )
            eid = store.add_event(
                tx.conn,
                consultation_id=consultation_id,
                at=now,
                kind=EventKind.RECORDING_STARTED,
                actor_id=participant_id,
                data={"recording_id": rid, "part": part, "resumed": True},
            )
            tx.audit("recording.resume", "recording", rid, consultation_id=consultation_id)
            event = next(iter(store.list_events(tx.conn, consultation_id, after_id=eid - 1)))
            return rid, event

        rid, event = await service.write(None, work)
        try:
            if self.legs.get(slot) is not kept:
                raise RecordingFailed("the leg was stopped meanwhile")
            await service.recorder.resume(kept.key, key, now=now)
        except RecordingFailed as exc:
            gone = LegResult(key=key, started_at=now, first_media_offset=None, file=None)
            await service._store_row(
                rid, dataclasses.replace(gone, error=str(exc)), interrupted=False
            )
            return
        del self.legs[slot]
        service.active[slot] = (key, rid)
        if service.listener is not None:
            await service.listener(consultation_id, participant_id, "recording", event)

    async def _finish_failed_part(self, kept: Kept, container: str) -> None:
        """Finish the file of a kept leg's last part, if the full disk kept it
        from being finished: with room again, what was written becomes playable
        now rather than at the next start (``recover``)."""
        service = self.service
        result = kept.result
        if result.file is not None or result.first_media_offset is None:
            return
        partial = service.recorder.partial_path(kept.key, container)
        if not await asyncio.to_thread(partial.exists):
            return
        try:
            finished = await asyncio.to_thread(finish_partial, partial)
            await service._seal(finished)
            done = dataclasses.replace(result, file=finished)
            await service._store_row(kept.recording_id, done, interrupted=False)
        except Exception:
            log.exception("recording=%s: its file is finished at the next start", kept.recording_id)
        else:
            kept.result = done


def failure_reason(error: str | None) -> str:
    """Why a leg's file failed, as the pages say it: ``disk_full`` or ``write_failed``."""
    text = error or ""
    if "No space left" in text or "Errno 28" in text or "Disk quota" in text:
        return "disk_full"
    return "write_failed"
