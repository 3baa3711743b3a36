"""Replay of recorded consultations: finding them, opening them, streaming files.

Who may replay: reviewers and administrators of the consulted hospital, and the
consultation's participants (``policy.can_replay``); anyone else gets the same
404 as for an id that does not exist, and the attempt is audited. Every replay
start and every download is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from records import store
from records.models import Account, Consultation, Event, Recording
from records.store import lookups
from records.vocab import ErrorCode, Role
from signaling.errors import NotFound
from signaling.workflow import policy
from signaling.workflow.base import Actor, Context, Service, Tx

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


def replayable(tx: Tx, consultation_id: str) -> Consultation:
    """A consultation the actor may replay; otherwise ``NotFound`` (audited)."""
    consultation = lookups.consultation(tx.conn, consultation_id)
    if consultation is None or not policy.can_replay(tx.account, consultation):
        raise NotFound("consultation not found", probe=("consultation", consultation_id))
    return consultation


class ReplayService(Service):
    """Use cases of the replay page."""

    def __init__(self, ctx: Context, *, root: Path) -> None:
        """Wire the service; ``root`` is the recordings directory."""
        super().__init__(ctx, denied=lambda kind: "replay.denied")
        self.root = root

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
            tx.audit("replay.start", "consultation", consultation.id, recordings=len(recs))
            return Replay(
                consultation=consultation,
                origin=origin,
                recordings=recs,
                events=events,
                people=people,
            )

        return await self.write(actor, work)

    async def file(
        self, actor: Actor, recording_id: str, *, download: bool, opening: bool
    ) -> tuple[Path, Recording]:
        """The file of a recording the actor may replay.

        ``download`` (saving a copy) is always audited; streaming is audited when
        a player opens the file (``opening``), not for each range it fetches.
        """

        def work(tx: Tx) -> Recording:
            # The same statements whether it exists or not (``records.store.lookups``).
            rec, consultation = lookups.recording(tx.conn, recording_id)
            if (
                rec is None
                or rec.status not in KEPT
                or consultation is None
                or not policy.can_replay(tx.account, consultation)
            ):
                raise NotFound("recording not found", probe=("recording", recording_id))
            if download or opening:
                tx.audit(
                    "recording.download" if download else "recording.stream",
                    "recording",
                    rec.id,
                    consultation_id=rec.consultation_id,
                )
            return rec

        rec = await self.write(actor, work)
        path = self.root / rec.path
        if not path.is_file():
            raise NotFound("recording file is missing", code=ErrorCode.FILE_MISSING)
        return path, rec
