"""Replay of recorded consultations: finding them, opening them, streaming files.

Who may replay: reviewers and administrators of the consulted hospital, and the
consultation's participants (``policy.can_replay``); anyone else gets the same
404 as for an id that does not exist, and the attempt is audited. Every replay
start and every download is audited.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from records import store
from records.clock import Clock
from records.db import Database
from records.models import Account, Consultation, Event, Recording
from signaling import policy
from signaling.access import Actor, Audited
from signaling.errors import NotFound

KEPT = ("finished", "recovered")


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


class ReplayService:
    """Use cases of the replay page."""

    def __init__(self, *, db: Database, clock: Clock, root: Path) -> None:
        """Wire the service; ``root`` is the recordings directory."""
        self.db = db
        self.clock = clock
        self._audited = Audited(db, clock, denied=lambda kind: "replay.denied")
        self.root = root

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: Actor,
        action: str,
        object_type: str,
        object_id: str | None,
        **detail: Any,
    ) -> None:
        await self._audited.audit(conn, actor, action, object_type, object_id, **detail)

    def _tx(self, actor: Actor) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction on behalf of ``actor``; refused probes are audited."""
        return self._audited.tx(actor)

    async def find(
        self, actor: Actor, filters: Filters, *, page: int, per_page: int
    ) -> tuple[int, list[Found]]:
        """Recorded consultations the actor may replay, newest first."""
        account = actor.account
        scope: dict[str, Any] = {}
        if account.role in ("reviewer", "admin"):
            scope["consulted_institution_id"] = account.institution_id
        elif account.role in ("clinic_doctor", "specialist"):
            scope["participant_scope"] = (account.id, account.institution_id)
        else:
            return 0, []
        async with self._tx(actor) as conn:
            total, rows = await store.find_recorded_consultations(
                conn, **scope, **vars(filters), offset=(page - 1) * per_page, limit=per_page
            )
            found = [
                Found(consultation=c, first_start=start, longest_ms=longest, recordings=n)
                for c, start, longest, n in rows
                if policy.can_replay(account, c)
            ]
            await self._audit(conn, actor, "replay.search", "recording", None, total=total)
        return total, found

    async def people(self, account_ids: list[str]) -> dict[str, Account]:
        """Staff accounts by id (names for the list)."""
        async with self.db.read() as conn:
            return await store.get_accounts(conn, account_ids)

    async def _replayable(self, conn: AsyncConnection, actor: Actor, cid: str) -> Consultation:
        consultation = await store.get_consultation(conn, cid)
        if consultation is None or not policy.can_replay(actor.account, consultation):
            raise NotFound("consultation not found", probe=("consultation", cid))
        return consultation

    async def open(self, actor: Actor, consultation_id: str) -> Replay:
        """Start a replay: the recordings, the timeline and who is who (audited)."""
        async with self._tx(actor) as conn:
            consultation = await self._replayable(conn, actor, consultation_id)
            recs = await store.list_recordings(
                conn, consultation_id=consultation.id, statuses=list(KEPT)
            )
            events = await store.list_events(conn, consultation.id)
            live = [e.at for e in events if e.kind == "live"]
            origin = live[0] if live else (recs[0].started_at if recs else consultation.created_at)
            people = await store.get_accounts(
                conn, [r.participant_id for r in recs] + [e.actor_id for e in events if e.actor_id]
            )
            await self._audit(
                conn, actor, "replay.start", "consultation", consultation.id, recordings=len(recs)
            )
        return Replay(
            consultation=consultation, origin=origin, recordings=recs, events=events, people=people
        )

    async def file(
        self, actor: Actor, recording_id: str, *, download: bool, opening: bool
    ) -> tuple[Path, Recording]:
        """The file of a recording the actor may replay.

        ``download`` (saving a copy) is always audited; streaming is audited when
        a player opens the file (``opening``), not for each range it fetches.
        """
        async with self._tx(actor) as conn:
            rec = await store.get_recording(conn, recording_id)
            if rec is None or rec.status not in KEPT:
                raise NotFound("recording not found", probe=("recording", recording_id))
            consultation = await store.get_consultation(conn, rec.consultation_id)
            if consultation is None or not policy.can_replay(actor.account, consultation):
                raise NotFound("recording not found", probe=("recording", recording_id))
            if download or opening:
                await self._audit(
                    conn,
                    actor,
                    "recording.download" if download else "recording.stream",
                    "recording",
                    rec.id,
                    consultation_id=rec.consultation_id,
                )
        path = self.root / rec.path
        if not path.is_file():
            raise NotFound("recording file is missing", code="file_missing")
        return path, rec
