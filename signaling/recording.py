"""Recording orchestration: consent, parts, the records, and the recorder.

The media plane (``media.recorder``) writes files and knows nothing of
consultations; this service decides whether a participant's leg may be recorded
(the patient's consent must cover recording), numbers the parts, keeps a row per
leg in the records, puts recording events on the timeline, and repairs what a
killed server left behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from media.finalize import FinishedFile, sha256_of
from media.recorder import LegResult, Recorder, RecordingKey
from records import audit, store
from records.clock import Clock
from records.db import Database
from records.models import Recording
from signaling.access import Actor
from signaling.errors import IllegalTransition, NotFound, RuleViolation

log = logging.getLogger(__name__)

MIN_RETENTION_DAYS = 3 * 365 + 1  # audio/video process records: at least 3 years


@dataclass(frozen=True, kw_only=True)
class Check:
    """One recording's file compared with its stored hash."""

    recording: Recording
    ok: bool
    problem: str | None = None


class RecordingService:
    """Starts, stops, finishes, repairs, verifies and purges recordings."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        recorder: Recorder,
        retention_days: int = MIN_RETENTION_DAYS,
    ) -> None:
        """Wire the service.

        Args:
            db: the system of record.
            clock: source of time.
            recorder: the media plane's recorder (its directory holds the files).
            retention_days: how long files are kept at least; never under 3 years.
        """
        if retention_days < MIN_RETENTION_DAYS:
            raise ValueError(f"recordings are kept at least {MIN_RETENTION_DAYS} days")
        self.db = db
        self.clock = clock
        self.recorder = recorder
        self.retention = timedelta(days=retention_days)
        self.active: dict[tuple[str, str], tuple[RecordingKey, str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Told (consultation id, participant id, "stopped" | "failed") once a
        # leg's file is stored, however the leg ended; the call rooms listen.
        self.listener: Callable[[str, str, str], Awaitable[None]] | None = None
        recorder.on_finished = self._leg_ended

    @property
    def root(self) -> Path:
        """The recordings directory."""
        return self.recorder.directory

    async def allowed(self, consultation_id: str) -> bool:
        """Whether the patient's current consent covers recording."""
        async with self.db.read() as conn:
            consultation = await store.get_consultation(conn, consultation_id)
            if consultation is None:
                return False
            consent = await store.active_consent(conn, consultation.patient_id)
        return consent is not None and consent.scope_recording

    def is_recording(self, consultation_id: str, participant_id: str) -> bool:
        """Whether a leg of this participant is running."""
        return (consultation_id, participant_id) in self.active

    async def start(self, actor: Actor, consultation_id: str, offer_sdp: str) -> str:
        """Answer a participant's recording offer; returns the answer SDP.

        Raises:
            RuleViolation: the consent does not cover recording
                (``recording_not_consented``).
            IllegalTransition: this participant is already being recorded.
        """
        if not await self.allowed(consultation_id):
            raise RuleViolation(
                "the patient's consent does not cover recording", code="recording_not_consented"
            )
        slot = (consultation_id, actor.id)
        if slot in self.active:
            raise IllegalTransition("already recording", code="already_recording")
        async with self.db.write() as conn:
            part = await store.next_recording_part(conn, consultation_id, actor.id)
            key = RecordingKey(consultation_id, actor.id, part)
            now = self.clock.now()
            answer = await self.recorder.start(key, offer_sdp, now=now)
            leg = self.recorder.legs[key]
            assert leg.writer is not None  # noqa: S101 - set by start()
            final = leg.writer.path.with_suffix("")
            rid = await store.add_recording(
                conn,
                consultation_id=consultation_id,
                participant_id=actor.id,
                part=part,
                path=str(final.relative_to(self.root)),
                container=leg.writer.format,
                video_codec=leg.writer.video_codec,
                audio_codec=leg.writer.stats.audio_codec,
                started_at=now,
            )
            await store.add_event(
                conn,
                consultation_id=consultation_id,
                at=now,
                kind="recording_started",
                actor_id=actor.id,
                data={"recording_id": rid, "part": part},
            )
            await audit.append(
                conn,
                at=now,
                actor_id=actor.id,
                action="recording.start",
                object_type="recording",
                object_id=rid,
                client_addr=actor.client_addr,
                detail={"consultation_id": consultation_id, "part": part},
            )
        self.active[slot] = (key, rid)
        return answer

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
            raise NotFound("no recording to add a candidate to", code="not_recording")
        await self.recorder.add_candidate(entry[0], candidate, sdp_mid, sdp_mline_index)

    async def stop(self, consultation_id: str, participant_id: str) -> Recording | None:
        """Stop and finish a participant's leg, if one runs."""
        entry = self.active.pop((consultation_id, participant_id), None)
        if entry is None:
            return None
        result = await self.recorder.stop(entry[0])
        if result is None:
            return None
        return await self._store(entry[1], result)

    async def stop_all(self, consultation_id: str) -> list[Recording]:
        """Finish every leg of a consultation (the call ended)."""
        out = []
        for cid, pid in [slot for slot in self.active if slot[0] == consultation_id]:
            rec = await self.stop(cid, pid)
            if rec is not None:
                out.append(rec)
        return out

    async def close(self) -> None:
        """Finish every running leg (server shutdown)."""
        for cid, pid in list(self.active):
            await self.stop(cid, pid)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _leg_ended(self, result: LegResult) -> None:
        # The browser's side went away (closed, failed): store what was recorded.
        slot = (result.key.consultation_id, result.key.participant_id)
        entry = self.active.get(slot)
        if entry is None or entry[0] != result.key:
            return
        del self.active[slot]
        self._spawn(self._store(entry[1], result))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self, recording_id: str, result: LegResult) -> Recording:
        rec = await self._store_row(recording_id, result)
        if self.listener is not None:
            state = "failed" if rec.status == "failed" else "stopped"
            await self.listener(rec.consultation_id, rec.participant_id, state)
        return rec

    async def _store_row(self, recording_id: str, result: LegResult) -> Recording:
        now = self.clock.now()
        async with self.db.write() as conn:
            rec = await store.get_recording(conn, recording_id)
            assert rec is not None  # noqa: S101 - inserted by start()
            if result.file is None:
                await store.update_recording(
                    conn,
                    recording_id,
                    status="failed",
                    error=(result.error or "")[:500],
                    finished_at=now,
                )
                kind = "recording_failed"
            else:
                offset = await self._session_offset(conn, rec.consultation_id, result)
                await store.update_recording(
                    conn,
                    recording_id,
                    **_file_values(result.file),
                    status="finished",
                    offset_ms=offset,
                    finished_at=now,
                    retain_until=now + self.retention,
                    error=result.error,
                )
                kind = "recording_finished"
            await store.add_event(
                conn,
                consultation_id=rec.consultation_id,
                at=now,
                kind=kind,
                actor_id=rec.participant_id,
                data={"recording_id": recording_id},
            )
            await audit.append(
                conn,
                at=now,
                actor_id=None,
                action=kind.replace("_", "."),
                object_type="recording",
                object_id=recording_id,
            )
            updated = await store.get_recording(conn, recording_id)
        assert updated is not None  # noqa: S101
        return updated

    async def _session_offset(self, conn: Any, consultation_id: str, result: LegResult) -> int:
        """Milliseconds from the session's start (it went live) to the file's time 0."""
        start = result.started_at + timedelta(seconds=result.first_media_offset or 0.0)
        live = [e.at for e in await store.list_events(conn, consultation_id) if e.kind == "live"]
        origin = live[0] if live else start
        return round((start - origin).total_seconds() * 1000)

    # -- repair, verification, purge ---------------------------------------------

    async def recover(self) -> list[Recording]:
        """Finalize every ``.partial`` left by a killed server and mark it recovered."""
        repaired = await asyncio.to_thread(self.recorder.recover)
        out = []
        now = self.clock.now()
        for partial, finished, error in repaired:
            relative = str(partial.with_suffix("").relative_to(self.root))
            async with self.db.write() as conn:
                rec = await store.recording_by_path(conn, relative)
                if rec is None:
                    log.warning("repaired %s, which the records do not know", relative)
                    continue
                if finished is None:
                    await store.update_recording(
                        conn, rec.id, status="failed", error=(error or "")[:500], finished_at=now
                    )
                else:
                    await store.update_recording(
                        conn,
                        rec.id,
                        **_file_values(finished),
                        status="recovered",
                        finished_at=now,
                        retain_until=now + self.retention,
                    )
                await store.add_event(
                    conn,
                    consultation_id=rec.consultation_id,
                    at=now,
                    kind="recording_recovered" if finished else "recording_failed",
                    actor_id=None,
                    data={"recording_id": rec.id},
                )
                await audit.append(
                    conn,
                    at=now,
                    actor_id=None,
                    action="recording.recover",
                    object_type="recording",
                    object_id=rec.id,
                    detail={"ok": finished is not None},
                )
                updated = await store.get_recording(conn, rec.id)
            if updated is not None:
                out.append(updated)
        return out

    async def verify(self) -> list[Check]:
        """Re-hash every kept file and compare with the records."""
        async with self.db.read() as conn:
            kept = await store.list_recordings(conn, statuses=["finished", "recovered"])
        checks = []
        for rec in kept:
            path = self.root / rec.path
            if not path.exists():
                checks.append(Check(recording=rec, ok=False, problem="file missing"))
                continue
            digest = await asyncio.to_thread(sha256_of, path)
            if digest != rec.sha256:
                checks.append(Check(recording=rec, ok=False, problem="SHA-256 mismatch"))
            else:
                checks.append(Check(recording=rec, ok=True))
        return checks

    async def purge(self, recording_ids: list[str] | None = None) -> list[Recording]:
        """Delete files whose retention has passed.

        Args:
            recording_ids: only these (each must be past its retention date);
                None: every recording past its date.

        Raises:
            RuleViolation: a named recording is younger than its retention date
                (``retention_not_reached``); nothing is deleted then.
        """
        now = self.clock.now()
        async with self.db.write() as conn:
            kept = await store.list_recordings(conn, statuses=["finished", "recovered", "failed"])
            if recording_ids is not None:
                wanted = {r.id: r for r in kept if r.id in set(recording_ids)}
                missing = set(recording_ids) - set(wanted)
                if missing:
                    raise NotFound(f"no such recording: {', '.join(sorted(missing))}")
                young = [r.id for r in wanted.values() if not _expired(r, now)]
                if young:
                    raise RuleViolation(
                        f"retention date not reached: {', '.join(young)}",
                        code="retention_not_reached",
                    )
                targets = list(wanted.values())
            else:
                targets = [r for r in kept if _expired(r, now)]
            for rec in targets:
                (self.root / rec.path).unlink(missing_ok=True)
                await store.update_recording(conn, rec.id, status="purged")
                await audit.append(
                    conn,
                    at=now,
                    actor_id=None,
                    action="recording.purge",
                    object_type="recording",
                    object_id=rec.id,
                )
        return targets


def _expired(rec: Recording, now: Any) -> bool:
    return rec.retain_until is not None and rec.retain_until <= now


def _file_values(finished: FinishedFile) -> dict[str, Any]:
    return {
        "duration_ms": round(finished.duration * 1000),
        "size": finished.size,
        "sha256": finished.sha256,
        "video_codec": finished.video_codec,
        "audio_codec": finished.audio_codec,
    }
