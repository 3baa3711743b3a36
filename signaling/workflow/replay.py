"""Replay of recorded consultations: finding them, opening them, streaming files.

Who may replay: reviewers and administrators of the consulted hospital, and the
consultation's participants (``policy.can_replay``); anyone else gets the same
404 as for an id that does not exist, and the attempt is audited. Every replay
start and every download is audited.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from media.export import ExportFailed, Watermark, export_watermarked
from records import store
from records.models import Account, Consultation, Department, Event, Institution, Recording
from records.sealed import Keyring, SealError, open_plain
from records.store import lookups
from records.vocab import ErrorCode, Role
from signaling.errors import NotFound, SignalingError
from signaling.workflow import policy
from signaling.workflow.base import Actor, Context, Service, Tx

log = logging.getLogger(__name__)

KEPT = ("finished", "recovered")
# How long a replay opened through a session covers the streaming of its files:
# within it, a player opening one of them is the replay already audited (its
# ``replay.start`` names the recordings), and the access check is made in memory
# against what that open read (see ``ReplayService.file``) instead of in a
# transaction of its own.
STREAM_GRANT_SECONDS = 600.0


@dataclass(frozen=True, kw_only=True)
class Filters:
    """Search filters for recorded consultations (all optional)."""

    started_from: datetime | None = None
    started_to: datetime | None = None
    department_id: str | None = None
    clinic_id: str | None = None
    specialist_id: str | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None


@dataclass(frozen=True, kw_only=True)
class Found:
    """One recorded consultation in a search result."""

    consultation: Consultation
    first_start: datetime
    longest_ms: int
    recordings: int


@dataclass(frozen=True, kw_only=True)
class Replay:
    """Everything the replay page needs."""

    consultation: Consultation
    origin: datetime
    recordings: list[Recording]
    events: list[Event]
    people: dict[str, Account]
    # Read in the same transaction, so that the page and the API need no other
    # query to name them: every institution (the people's, the consultation's,
    # the viewer's) and the consultation's department.
    institutions: dict[str, Institution] = field(default_factory=dict)
    department: Department | None = None


@dataclass(frozen=True, kw_only=True)
class Grant:
    """What an audited replay open read about one of its recordings, kept for
    the streaming of that file through the same session until ``until``."""

    until: float
    recording: Recording
    consultation: Consultation


def replayable(tx: Tx, consultation_id: str) -> Consultation:
    """A consultation the actor may replay; otherwise ``NotFound`` (audited)."""
    consultation = lookups.consultation(tx.conn, consultation_id)
    if consultation is None or not policy.can_replay(tx.account, consultation):
        raise NotFound("consultation not found", probe=("consultation", consultation_id))
    return consultation


def replayable_recording(tx: Tx, recording_id: str) -> Recording:
    """A kept recording the actor may replay; otherwise ``NotFound`` (audited).

    The same statements run whether it exists or not (``records.store.lookups``),
    so a refused id costs what a never-existing one does.
    """
    rec, consultation = lookups.recording(tx.conn, recording_id)
    if (
        rec is None
        or rec.status not in KEPT
        or consultation is None
        or not policy.can_replay(tx.account, consultation)
    ):
        raise NotFound("recording not found", probe=("recording", recording_id))
    return rec


class ReplayService(Service):
    """Use cases of the replay page."""

    def __init__(self, ctx: Context, *, root: Path) -> None:
        """Wire the service; ``root`` is the recordings directory."""
        super().__init__(ctx, denied=lambda kind: "replay.denied")
        self.root = root
        # (session, recording id) -> the grant of a replay opened through that
        # session: until when (the clock's seconds) it covers the streaming of
        # the recording, and what the open read. In memory, per process: a miss
        # (another web process, a restart) only means the player's request is
        # checked (and its opening audited) in the database, as without it.
        self._granted: dict[tuple[str, str], Grant] = {}

    async def find(
        self, actor: Actor, filters: Filters, *, page: int, per_page: int
    ) -> tuple[int, list[Found]]:
        """Recorded consultations the actor may replay, newest first."""
        account = actor.account
        scope: dict[str, Any] = {}
        if account.role in (Role.REVIEWER, Role.ADMIN):
            scope["consulted_institution_id"] = account.institution_id
        elif account.role in (Role.CLINIC_DOCTOR, Role.SPECIALIST):
            scope["participant_scope"] = (account.id, account.institution_id)
        else:
            return 0, []

        def work(tx: Tx) -> tuple[int, list[Found]]:
            total, rows = store.find_recorded_consultations(
                tx.conn, **scope, **vars(filters), offset=(page - 1) * per_page, limit=per_page
            )
            found = [
                Found(consultation=c, first_start=start, longest_ms=longest, recordings=n)
                for c, start, longest, n in rows
                if policy.can_replay(account, c)
            ]
            tx.audit("replay.search", "recording", None, total=total)
            return total, found

        return await self.write(actor, work)

    async def open(self, actor: Actor, consultation_id: str) -> Replay:
        """Start a replay: the recordings, the timeline and who is who (audited)."""

        def work(tx: Tx) -> Replay:
            consultation = replayable(tx, consultation_id)
            recs = store.list_recordings(
                tx.conn, consultation_id=consultation.id, statuses=list(KEPT)
            )
            events = store.list_events(tx.conn, consultation.id)
            live = [e.at for e in events if e.kind == "live"]
            origin = live[0] if live else (recs[0].started_at if recs else consultation.created_at)
            people = store.get_accounts(
                tx.conn,
                [r.participant_id for r in recs] + [e.actor_id for e in events if e.actor_id],
            )
            # The institutions the replay names (the clinic, the hospital, each
            # person's) and the viewer's own (the watermark), not the whole
            # directory: a provincial platform has hundreds.
            institutions = store.get_institutions(
                tx.conn,
                [
                    consultation.requesting_institution_id,
                    consultation.consulted_institution_id,
                    actor.account.institution_id,
                    *(p.institution_id for p in people.values()),
                ],
            )
            department = store.get_department(tx.conn, consultation.department_id)
            tx.audit(
                "replay.start",
                "consultation",
                consultation.id,
                recordings=len(recs),
                recording_ids=[r.id for r in recs],
            )
            return Replay(
                consultation=consultation,
                origin=origin,
                recordings=recs,
                events=events,
                people=people,
                institutions=institutions,
                department=department,
            )

        # In one hop: the replay page's first byte waits for this transaction.
        replay = await self.write(actor, work, at_once=True)
        if actor.session is not None:
            until = self.clock.now().timestamp() + STREAM_GRANT_SECONDS
            self._forget_expired()
            for rec in replay.recordings:
                self._granted[(actor.session, rec.id)] = Grant(
                    until=until, recording=rec, consultation=replay.consultation
                )
        return replay

    def _forget_expired(self) -> None:
        now = self.clock.now().timestamp()
        for key in [k for k, grant in self._granted.items() if grant.until <= now]:
            del self._granted[key]

    def _grant(self, actor: Actor, recording_id: str) -> Grant | None:
        """The grant of a replay opened through the actor's session that covers
        this file now, if the actor (as the session has them now) may still
        replay its consultation; otherwise None."""
        if actor.session is None:
            return None
        grant = self._granted.get((actor.session, recording_id))
        if grant is None or self.clock.now().timestamp() >= grant.until:
            return None
        if not policy.can_replay(actor.account, grant.consultation):
            return None
        return grant

    async def file(
        self, actor: Actor, recording_id: str, *, download: bool, opening: bool
    ) -> tuple[Path, Recording]:
        """The file of a recording the actor may replay.

        ``download`` (saving a copy) is always audited. Streaming is audited when
        a player opens the file (``opening``), not for each range it fetches, and
        not at all when a replay the session opened a moment ago (audited as
        ``replay.start``, with this recording's id) covers it. A covered request
        is checked in memory: the account, as the request's session has it
        (read from the database, or kept from a read with nothing written to
        the accounts since: ``AuthService.authenticate``), against the
        consultation that audited open read (who may replay a consultation
        depends on the account's role and institution and on the consultation's
        hospital and participants, not on the minutes in between). That is no
        transaction at all before the player's first bytes: each statement of
        one is a hop to the database driver's thread and back, and on a loaded
        machine every hop waits for a core (the player's first byte waited
        20-60 ms for its read transaction, a bare file server's 4). Whatever
        else is not audited is checked on a read transaction, which does not
        queue behind the single writer.
        """
        grant = None if download else self._grant(actor, recording_id)
        if grant is not None:
            path = self.root / grant.recording.path
            if not path.is_file():
                raise NotFound("recording file is missing", code=ErrorCode.FILE_MISSING)
            return path, grant.recording
        audited = download or opening

        def work(tx: Tx) -> Recording:
            rec = replayable_recording(tx, recording_id)
            if audited:
                tx.audit(
                    "recording.download" if download else "recording.stream",
                    "recording",
                    rec.id,
                    consultation_id=rec.consultation_id,
                )
            return rec

        if audited:
            rec = await self.write(actor, work)
        else:
            rec = await self.checked(actor, work)
        path = self.root / rec.path
        if not path.is_file():
            raise NotFound("recording file is missing", code=ErrorCode.FILE_MISSING)
        return path, rec


# -- watermarked exports --------------------------------------------------------------


class ExportCancelled(ExportFailed):
    """The server is stopping: the export in progress is abandoned."""


@dataclass(kw_only=True)
class ExportJob:
    """One watermarked export of a recording, asked for by one account.

    ``state`` goes ``queued`` -> ``running`` -> ``done`` | ``failed``; ``progress``
    is the fraction done (written by the worker thread, read by the loop).
    """

    id: str
    recording_id: str
    owner_id: str
    container: str
    path: Path
    watermark: tuple[str, ...]
    state: str = "queued"
    progress: float = 0.0
    finished_at: datetime | None = None
    cancelled: bool = field(default=False, repr=False)

    @property
    def filename(self) -> str:
        """The name a download is saved under."""
        return f"recording-{self.recording_id}-watermarked-{self.id[:8]}.{self.container}"


class RecordingExports(Service):
    """Copies of recordings with the viewer's watermark burned in, made on request.

    Only here does the server decode and re-encode a recording, and only when a
    viewer asks for it; replay and download stay byte copies. Exports run one at
    a time on a worker thread (they are CPU-bound and must not starve the live
    calls); the finished file is kept for its owner for ``keep_seconds``, then
    deleted. Jobs live in memory: a restart forgets them and removes the files.
    """

    def __init__(
        self,
        ctx: Context,
        *,
        root: Path,
        work_dir: Path,
        font: Path | None = None,
        keep_seconds: float = 3600,
        keyring: Keyring | None = None,
    ) -> None:
        """Wire the service: ``root`` holds the recordings, ``work_dir`` the exports,
        ``keyring`` opens recordings sealed at rest."""
        super().__init__(ctx, denied=lambda kind: "replay.denied")
        self.root = root
        self.keyring = keyring
        self.work_dir = work_dir
        self.font = font
        self.keep_seconds = keep_seconds
        self.jobs: dict[str, ExportJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot = asyncio.Semaphore(1)
        # What an earlier run left behind is not anybody's any more.
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True, exist_ok=True)

    async def start(self, actor: Actor, recording_id: str) -> ExportJob:
        """Start a watermarked export of a recording the actor may replay (audited).

        The watermark names the actor, their institution, the time and the
        export's id (which the audit entry keeps, so that a leaked copy can be
        traced to who made it).
        """
        self._sweep()
        job_id = store.new_id()

        def work(tx: Tx) -> tuple[Recording, str]:
            rec = replayable_recording(tx, recording_id)
            institution = store.get_institution(tx.conn, tx.account.institution_id)
            tx.audit(
                "recording.export",
                "recording",
                rec.id,
                consultation_id=rec.consultation_id,
                export_id=job_id,
                watermark=True,
            )
            return rec, institution.name if institution else ""

        rec, institution = await self.write(actor, work)
        source = self.root / rec.path
        if not source.is_file():
            raise NotFound("recording file is missing", code=ErrorCode.FILE_MISSING)
        stamp = self.clock.now().astimezone().strftime("%Y-%m-%d %H:%M %z")
        lines = (
            " · ".join(part for part in (actor.account.display_name, institution) if part),
            f"{stamp} #{job_id[:8]}",
        )
        job = ExportJob(
            id=job_id,
            recording_id=rec.id,
            owner_id=actor.id,
            container=rec.container,
            path=self.work_dir / f"{job_id}.{rec.container}",
            watermark=lines,
        )
        self.jobs[job.id] = job
        task = asyncio.create_task(self._run(job, source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: ExportJob, source: Path) -> None:
        def progress(fraction: float) -> None:
            if job.cancelled:
                raise ExportCancelled("the server is stopping")
            job.progress = fraction

        async with self._slot:
            if job.cancelled:
                return
            job.state = "running"
            try:
                watermark = Watermark.of(*job.watermark, font=self.font)
                await asyncio.to_thread(self._export, source, job.path, watermark, progress)
            except ExportFailed as exc:
                log.warning("export=%s recording=%s failed: %s", job.id, job.recording_id, exc)
                job.state = "failed"
            else:
                job.state = "done"
                job.progress = 1.0
            job.finished_at = self.clock.now()

    def _export(
        self,
        source: Path,
        target: Path,
        watermark: Watermark,
        progress: Callable[[float], None],
    ) -> None:
        # Sealed or not, the recording is read as plaintext (decrypted as it goes).
        try:
            plain = open_plain(source, self.keyring)
        except (OSError, SealError) as exc:
            raise ExportFailed(f"cannot read the recording: {exc}") from exc
        with plain:
            export_watermarked(plain, target, watermark, progress=progress)

    async def _own(self, actor: Actor, export_id: str) -> ExportJob:
        # Another account's export answers exactly as one that never existed,
        # and the refused look is audited like any other probe.
        job = self.jobs.get(export_id)
        if job is not None and job.owner_id == actor.id:
            return job

        def refuse(tx: Tx) -> ExportJob:
            raise NotFound("export not found", probe=("export", export_id))

        return await self.write(actor, refuse)

    async def status(self, actor: Actor, export_id: str) -> ExportJob:
        """The actor's own export, to follow its progress."""
        self._sweep()
        return await self._own(actor, export_id)

    async def file(self, actor: Actor, export_id: str) -> tuple[Path, ExportJob]:
        """The finished file of the actor's own export (its download is audited)."""
        self._sweep()
        job = await self._own(actor, export_id)
        if job.state != "done" or not job.path.is_file():
            raise SignalingError("the export is not ready", code=ErrorCode.CONFLICT)

        def work(tx: Tx) -> None:
            tx.audit("recording.export_download", "recording", job.recording_id, export_id=job.id)

        await self.write(actor, work)
        return job.path, job

    def _sweep(self) -> None:
        """Forget finished exports older than ``keep_seconds`` and delete their files."""
        now = self.clock.now()
        for job in list(self.jobs.values()):
            if job.finished_at and (now - job.finished_at).total_seconds() > self.keep_seconds:
                job.path.unlink(missing_ok=True)
                del self.jobs[job.id]

    async def close(self) -> None:
        """Abandon running exports, wait for their threads, delete every file."""
        for job in self.jobs.values():
            job.cancelled = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for job in self.jobs.values():
            job.path.unlink(missing_ok=True)
        self.jobs.clear()
