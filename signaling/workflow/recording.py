"""Recording orchestration: consent, parts, the records, and the recorder.

The media plane (``media.recorder``) writes files and knows nothing of
consultations; this service decides whether a participant's leg may be recorded
(the patient's consent must cover recording), numbers the parts, keeps a row per
leg in the records, puts recording events on the timeline, and repairs what a
killed server left behind. A leg whose file cannot be written (a full disk)
is kept for the live call and records again later: ``kept_legs``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import shutil
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from media.errors import RecordingFailed
from media.finalize import FinishedFile, describe
from media.host import LegHost
from media.leg import LegResult, RecordingKey
from media.repair import Repaired
from records import sealed, store
from records.models import Event, Recording
from records.vocab import ErrorCode, EventKind
from signaling.errors import IllegalTransition, NotFound, RuleViolation
from signaling.workflow import recording_rows as rows
from signaling.workflow.base import Actor, Context, Service, Tx, stored
from signaling.workflow.kept_legs import RESUME_CHECK_SECONDS, KeptLegs
from signaling.workflow.retention import Retention

log = logging.getLogger(__name__)


class Listener(Protocol):
    """Told (consultation id, participant id, state, timeline event or None) once a
    leg's file is stored: state "stopped" (asked for), "interrupted" (the leg ended
    by itself: the browser's side went away, the file could not be written) or
    "failed" (nothing usable was recorded); "recording" when a kept leg records
    again. The event is ``recording_interrupted`` when the call was live then:
    the participant is not being recorded (``recording_started`` on resuming).

    ``kept``: the file could not be written but the leg's connection goes on
    (in a relayed call it carries the participant to the others); ``reason``
    says why it stopped (``disk_full``, ``write_failed``).
    """

    def __call__(
        self,
        consultation_id: str,
        participant_id: str,
        state: str,
        event: Event | None,
        /,
        *,
        kept: bool = False,
        reason: str | None = None,
    ) -> Awaitable[None]: ...


MIN_RETENTION_DAYS = 3 * 365 + 1  # audio/video process records: at least 3 years


class RecordingService(Service):
    """Starts, stops, finishes and repairs recordings (verified and purged by
    ``files``, the ``retention`` service of the same directory)."""

    def __init__(
        self,
        ctx: Context,
        *,
        recorder: LegHost,
        retention_days: int = MIN_RETENTION_DAYS,
        keyring: sealed.Keyring | None = None,
        resume_min_free_bytes: int = 1024 * 1024 * 1024,
        resume_check_seconds: float = RESUME_CHECK_SECONDS,
    ) -> None:
        """Wire the service.

        Args:
            ctx: the app's database, clock and notifier.
            recorder: the media plane's recorder, in this process or a pool of
                media workers (its directory holds the files).
            retention_days: how long files are kept at least; never under 3 years.
            keyring: if set, every finished or repaired file is sealed (encrypted
                at rest, ``records.sealed``) before its row says it is kept.
            resume_min_free_bytes: a leg whose file failed records again (a new
                part) once the recordings' disk has this much free and can be
                written: ``readiness_min_free_mb``, the threshold of ``/readyz``.
            resume_check_seconds: how often that is checked while a leg waits.
        """
        if retention_days < MIN_RETENTION_DAYS:
            raise ValueError(f"recordings are kept at least {MIN_RETENTION_DAYS} days")
        super().__init__(ctx)
        self.recorder = recorder
        self.keyring = keyring
        self.retention = timedelta(days=retention_days)
        self.active: dict[tuple[str, str], tuple[RecordingKey, str]] = {}
        # Legs whose negotiation is under way (reserved, not yet in the records).
        self._starting: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # The call rooms listen (see ``Listener``), and say who is in a call:
        # a leg that ends by itself is an interruption only while its
        # participant is still there (not after they left).
        self.listener: Listener | None = None
        self.present: Callable[[str, str], bool] | None = None
        recorder.on_finished = self._leg_ended
        # Legs whose file failed, kept because the live call goes on; they are
        # not "recording" (``kept_legs``).
        self.kept = KeptLegs(
            self, min_free_bytes=resume_min_free_bytes, check_seconds=resume_check_seconds
        )
        recorder.on_writing_failed = self.kept.writing_failed
        # The finished files, checked against their hashes and purged at their
        # date (``retention``).
        self.files = Retention(ctx, root=recorder.directory, keyring=keyring)

    @property
    def root(self) -> Path:
        """The recordings directory."""
        return self.recorder.directory

    async def allowed(self, consultation_id: str) -> bool:
        """Whether the patient's current consent covers recording."""

        def work(conn: sa.Connection) -> bool:
            consultation = store.get_consultation(conn, consultation_id)
            if consultation is None:
                return False
            consent = store.active_consent(conn, consultation.patient_id)
            return consent is not None and consent.scope_recording

        return await self.read(work)

    def is_recording(self, consultation_id: str, participant_id: str) -> bool:
        """Whether a leg of this participant is running."""
        return (consultation_id, participant_id) in self.active

    def has_leg(self, consultation_id: str, participant_id: str) -> bool:
        """Whether a leg of this participant is connected: recording, or kept
        without a file (its disk was full) because it carries the live call."""
        slot = (consultation_id, participant_id)
        return slot in self.active or slot in self.kept

    def halted(self, consultation_id: str, participant_id: str) -> str | None:
        """Why a participant's leg is kept without a file (``disk_full``,
        ``write_failed``), or None when it is not."""
        return self.kept.reason((consultation_id, participant_id))

    def _leg_key(self, slot: tuple[str, str]) -> RecordingKey | None:
        entry = self.active.get(slot)
        if entry is not None:
            return entry[0]
        return self.kept.key(slot)

    async def start(self, actor: Actor, consultation_id: str, offer_sdp: str) -> str:
        """Answer a participant's recording offer; returns the answer SDP.

        The part is reserved first, the recorder negotiates outside any
        transaction (aiortc gathers candidates, which can take seconds against
        an unreachable STUN server), and only then is the recording written to
        the records: the single writer is never held across the network.

        Raises:
            RuleViolation: the consent does not cover recording
                (``recording_not_consented``).
            IllegalTransition: this participant is already being recorded.
        """
        if not await self.allowed(consultation_id):
            raise RuleViolation(
                "the patient's consent does not cover recording",
                code=ErrorCode.RECORDING_NOT_CONSENTED,
            )
        slot = (consultation_id, actor.id)
        if slot in self._starting:
            # Two offers of one participant at once: the page tries again.
            raise IllegalTransition("already recording", code=ErrorCode.ALREADY_RECORDING)
        self._starting.add(slot)
        try:
            replaced = self.active.pop(slot, None)
            if replaced is not None:
                # The participant offers again while their old leg is still
                # registered: a reload, or a browser that died and came back
                # within the grace period (the dead leg would keep its place
                # until ICE gives up). A participant has one page in the call,
                # so the old leg ends as its own part and the new one follows;
                # it ends at once (the gone page cannot resend what it missed).
                result = await self.recorder.stop(replaced[0], drain=False)
                if result is not None:
                    await self._store(replaced[1], result)
            await self.kept.drop(slot)  # a kept leg's part is stored: its connection goes
            part = await self.read(
                lambda conn: store.next_recording_part(conn, consultation_id, actor.id)
            )
            key = RecordingKey(consultation_id, actor.id, part)
            now = self.clock.now()
            answer = await self.recorder.start(key, offer_sdp, now=now)
            try:
                rid = await self._note_start(actor, key, now)
            except BaseException:
                # The leg must not outlive a start that failed: it would hold
                # its part, and every later offer would be refused.
                await self.recorder.stop(key)
                raise
            self.active[slot] = (key, rid)
        finally:
            self._starting.discard(slot)
            self.kept.started(slot)
        return answer

    async def _note_start(self, actor: Actor, key: RecordingKey, now: datetime) -> str:
        """Write a started part to the records: its row, event and audit entry."""
        consultation_id, part = key.consultation_id, key.part
        file = self.recorder.leg_file(key)

        def work(tx: Tx) -> str:
            rid = store.add_recording(
                tx.conn,
                consultation_id=consultation_id,
                participant_id=actor.id,
                part=part,
                path=str(file.path.with_suffix("").relative_to(self.root)),
                container=file.container,
                video_codec=file.video_codec,
                audio_codec=file.audio_codec,
                started_at=now,
            )
            tx.event(
                consultation_id,
                EventKind.RECORDING_STARTED,
                {"recording_id": rid, "part": part},
                at=now,
            )
            tx.audit(
                "recording.start",
                "recording",
                rid,
                consultation_id=consultation_id,
                part=part,
            )
            return rid

        return await self.write(actor, work)

    async def candidate(
        self,
        actor: Actor,
        consultation_id: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """A trickled candidate for the participant's recording leg."""
        entry = self.active.get((consultation_id, actor.id))
        if entry is None:
            raise NotFound("no recording to add a candidate to", code=ErrorCode.NOT_RECORDING)
        await self.recorder.add_candidate(entry[0], candidate, sdp_mid, sdp_mline_index)

    async def stop(
        self, consultation_id: str, participant_id: str, *, settle: bool = False
    ) -> Recording | None:
        """Stop and finish a participant's leg, if one runs (``settle``: another
        page ended the call, ``Recorder.stop``)."""
        slot = (consultation_id, participant_id)
        self.kept.forget_strikes(slot)
        await self.kept.drop(slot)  # its part is stored already
        entry = self.active.pop(slot, None)
        if entry is None:
            return None
        result = await self.recorder.stop(entry[0], settle=settle)
        if result is None:
            return None
        return await self._store(entry[1], result)

    async def relay_offer(self, consultation_id: str, source_id: str, viewer_id: str) -> str | None:
        """Open the relay of a participant's running leg to another; the offer SDP.

        None when the source has no running leg (it has not started, or it
        ended meanwhile): the viewer is offered the relay when it starts.
        """
        key = self._leg_key((consultation_id, source_id))
        if key is None:
            return None
        try:
            return await self.recorder.relay_offer(key, viewer_id)
        except RecordingFailed:
            return None

    async def relay_answer(
        self, consultation_id: str, source_id: str, viewer_id: str, answer_sdp: str
    ) -> bool:
        """The viewer's answer for a relay; False if no relay to it is open."""
        key = self._leg_key((consultation_id, source_id))
        if key is None:
            return False
        return await self.recorder.relay_answer(key, viewer_id, answer_sdp)

    async def relay_close(self, consultation_id: str, viewer_id: str) -> None:
        """Close every relay of the consultation to ``viewer_id``."""
        await self.recorder.relay_close(consultation_id, viewer_id)

    async def stop_all(self, consultation_id: str, ended_by: str | None = None) -> list[Recording]:
        """Finish every leg of a consultation (the call ended; ``ended_by``: the
        participant whose page ended it, which waited for its own last frames
        before it said so; every other leg waits for its page to stop)."""
        slots = sorted({slot for slot in [*self.active, *self.kept] if slot[0] == consultation_id})
        # Together: each leg first waits for its last frames (``Leg.drain``)
        # while its page holds the connection open; one after the other, the
        # last page waited for every earlier leg's file to be finished too.
        done = await asyncio.gather(
            *(self.stop(cid, pid, settle=ended_by not in (None, pid)) for cid, pid in slots),
            return_exceptions=True,
        )
        failed = [result for result in done if isinstance(result, BaseException)]
        for (cid, pid), result in zip(slots, done, strict=True):
            if isinstance(result, BaseException) and result is not failed[0]:
                log.error(
                    "consultation=%s peer=%s recording not stored at the end",
                    cid,
                    pid,
                    exc_info=result,
                )
        if failed:
            raise failed[0]  # the others are stored (or logged); whoever asked logs it
        return [rec for rec in done if isinstance(rec, Recording)]

    async def close(self) -> None:
        """Finish every running leg (server shutdown).

        A leg whose file or row cannot be stored (a full disk) does not keep the
        others from finishing or the server from stopping: the next start
        repairs what is left (``recover``).
        """
        await self.kept.close()
        slots = [*self.active, *self.kept]
        # Together, as at a call's end: each leg may wait for its last frames.
        done = await asyncio.gather(
            *(self.stop(cid, pid) for cid, pid in slots), return_exceptions=True
        )
        for (cid, pid), result in zip(slots, done, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "consultation=%s peer=%s recording not stored at shutdown",
                    cid,
                    pid,
                    exc_info=result,
                )
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _leg_ended(self, result: LegResult) -> None:
        # The leg ended by itself (the browser's side went away, the file could
        # not be written): store what was recorded, and say the participant is
        # no longer being recorded.
        self.recorder.forget(result.key)
        if self.kept.connection_ended(result):
            return
        slot = (result.key.consultation_id, result.key.participant_id)
        entry = self.active.get(slot)
        if entry is None or entry[0] != result.key:
            return
        del self.active[slot]
        self._spawn(self._store_logged(entry[1], result))

    async def _store_logged(self, recording_id: str, result: LegResult) -> None:
        try:
            await self._store(recording_id, result, interrupted=True)
        except Exception:
            log.exception("recording=%s not stored (recover repairs it at start)", recording_id)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _seal(self, finished: FinishedFile | None) -> None:
        """Encrypt a finished file in place (its recorded SHA-256 is of the plaintext).

        A failure (a full disk) leaves the file in plaintext and readable; it is
        logged, and ``teleconsult keys rotate`` seals it later.
        """
        if self.keyring is None or finished is None:
            return
        try:
            await asyncio.to_thread(sealed.seal_file, finished.path, self.keyring)
        except OSError:
            log.exception("could not encrypt %s; it stays in plaintext", finished.path.name)

    async def _describe(self, path: Path) -> FinishedFile:
        """What the records keep of a finished file, sealed at rest or not."""
        if not sealed.is_sealed(path):
            return await asyncio.to_thread(describe, path)

        def from_plaintext() -> FinishedFile:
            # PyAV reads the plaintext from a temporary copy beside the file.
            plain = path.with_name(path.name + ".plain")
            try:
                with sealed.open_plain(path, self.keyring) as src, plain.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                return dataclasses.replace(describe(plain), path=path)
            finally:
                plain.unlink(missing_ok=True)

        return await asyncio.to_thread(from_plaintext)

    async def _store(
        self,
        recording_id: str,
        result: LegResult,
        *,
        interrupted: bool = False,
        kept: bool = False,
        reason: str | None = None,
    ) -> Recording:
        await self._seal(result.file)
        rec, event = await self._store_row(recording_id, result, interrupted=interrupted)
        if self.listener is not None:
            if rec.status == "failed":
                state = "failed"
            else:
                state = "interrupted" if interrupted else "stopped"
            await self.listener(
                rec.consultation_id, rec.participant_id, state, event, kept=kept, reason=reason
            )
        return rec

    async def _store_row(
        self, recording_id: str, result: LegResult, *, interrupted: bool
    ) -> tuple[Recording, Event | None]:
        def work(tx: Tx) -> tuple[Recording, Event | None]:
            now = tx.now
            rec = stored(store.get_recording(tx.conn, recording_id))
            if result.file is None:
                store.update_recording(
                    tx.conn,
                    recording_id,
                    status="failed",
                    error=(result.error or "")[:500],
                    finished_at=now,
                )
                kind = EventKind.RECORDING_FAILED
            else:
                store.update_recording(
                    tx.conn,
                    recording_id,
                    **rows.file_values(result.file),
                    status="finished",
                    offset_ms=rows.session_offset(tx.conn, rec.consultation_id, result),
                    finished_at=now,
                    retain_until=now + self.retention,
                    error=result.error,
                )
                kind = EventKind.RECORDING_FINISHED
            store.add_event(
                tx.conn,
                consultation_id=rec.consultation_id,
                at=now,
                kind=kind,
                actor_id=rec.participant_id,
                data={"recording_id": recording_id},
            )
            tx.audit(kind.replace("_", "."), "recording", recording_id)
            event = None
            if interrupted and (
                self.present is None or self.present(rec.consultation_id, rec.participant_id)
            ):
                event = rows.interrupted(tx, rec, reason=result.error or "connection lost")
            return stored(store.get_recording(tx.conn, recording_id)), event

        return await self.write(None, work)

    # -- repair, verification, purge ---------------------------------------------

    async def recover_call(self, consultation_id: str) -> list[Recording]:
        """Repair the legs of one call that a dead process was writing, if any.

        Called when this process takes the call's room over (several web
        processes); looks at the disk only when the records say a leg of the
        call was still being written.
        """
        left = await self.read(lambda conn: store.list_recordings(conn, statuses=["recording"]))
        if not any(rec.consultation_id == consultation_id for rec in left):
            return []
        return await self.recover(only=lambda cid: cid == consultation_id)

    async def recover(self, only: Callable[[str], bool] | None = None) -> list[Recording]:
        """Repair what a stopped server left and mark it on the timeline.

        Every ``.partial`` file is finalized and marked ``recovered`` (placed on
        the session's clock by the start noted beside it). A row still
        ``recording`` without a partial file (its file was finished but the
        row could not be stored, e.g. on a full disk) is settled from the file
        if there is one, else marked failed. No leg of those consultations runs
        in this process when this is called.

        Args:
            only: which consultations' legs to repair, by id (None: all). With
                several web processes, the legs of a call another living
                process holds are being written still.
        """

        def chosen(partial: Path) -> bool:
            return only is None or only(partial.relative_to(self.root).parts[0])

        repaired = await asyncio.to_thread(self.recorder.recover, chosen)
        # What an interrupted sealing left beside its (intact) original.
        for temp in await asyncio.to_thread(sealed.leftover_temps, self.root):
            temp.unlink(missing_ok=True)
        out = []
        for item in repaired:
            await self._seal(item.file)
            relative = str(item.partial.with_suffix("").relative_to(self.root))
            updated = await self.write(
                None,
                functools.partial(
                    rows.mark_recovered, relative=relative, item=item, retention=self.retention
                ),
            )
            if updated is None:
                log.warning("repaired %s, which the records do not know", relative)
                continue
            out.append(updated)
        left = await self.read(lambda conn: store.list_recordings(conn, statuses=["recording"]))
        for rec in left:
            if only is not None and not only(rec.consultation_id):
                continue
            path = self.root / rec.path
            finished: FinishedFile | None = None
            error = "the recording's file is missing"
            if path.exists():
                try:
                    finished = await self._describe(path)
                    await self._seal(finished)
                except Exception as exc:
                    error = repr(exc)
            item = Repaired(
                partial=path.with_name(path.name + ".partial"),
                file=finished,
                error=None if finished else error,
                first_media_offset=None,
            )
            updated = await self.write(
                None,
                functools.partial(
                    rows.mark_recovered, relative=rec.path, item=item, retention=self.retention
                ),
            )
            if updated is not None:
                out.append(updated)
        return out
