"""Matching a request with a specialist: accept, decline, assign, escalate, roster."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from records import store
from records.models import Consultation, RosterEntry
from records.vocab import ErrorCode, EventKind, Role, Urgency
from signaling.errors import Forbidden, Invalid, NotFound
from signaling.workflow.base import Actor, Context, Service, Tx, stored
from signaling.workflow.consultations import hospital_department_ids
from signaling.workflow.deadlines import IN_HAND
from signaling.workflow.lifecycle import WAITING, Action, State

log = logging.getLogger(__name__)


class MatchingService(Service):
    """Who takes a request: the department's specialists, the coordinators, the clock."""

    def __init__(self, ctx: Context, *, escalate_after: dict[str, int]) -> None:
        """Wire the service.

        Args:
            ctx: the app's database, clock and notifier.
            escalate_after: seconds a request of each urgency waits before it is
                escalated to the coordinators.
        """
        super().__init__(ctx)
        self.escalate_after = dict(escalate_after)

    async def accept(self, actor: Actor, consultation_id: str) -> Consultation:
        """A specialist of the department takes the request."""
        self.require_role(actor, Role.SPECIALIST)

        def step(tx: Tx, c: Consultation) -> Consultation:
            self.check_practice(tx.account)
            if c.target_specialist_id and c.target_specialist_id != actor.id and not c.escalated:
                raise Forbidden(
                    "this request is addressed to another specialist",
                    code=ErrorCode.ADDRESSED_TO_OTHER,
                )
            return tx.transition(
                c,
                Action.ACCEPT,
                EventKind.ACCEPTED,
                {"specialist_id": actor.id},
                assigned_specialist_id=actor.id,
            )

        return await self.step(actor, consultation_id, step)

    async def decline(self, actor: Actor, consultation_id: str, reason: str) -> Consultation:
        """The hospital declines the request (a specialist of the department or a coordinator)."""
        self.require_role(actor, Role.SPECIALIST, Role.COORDINATOR)
        return await self.step(
            actor,
            consultation_id,
            lambda tx, c: tx.transition(
                c, Action.DECLINE, EventKind.DECLINED, {"reason": reason}, decline_reason=reason
            ),
        )

    async def assign(self, actor: Actor, consultation_id: str, specialist_id: str) -> Consultation:
        """A coordinator assigns (or reassigns) the consultation to a specialist."""
        self.require_role(actor, Role.COORDINATOR)

        def step(tx: Tx, c: Consultation) -> Consultation:
            specialist = store.get_account(tx.conn, specialist_id)
            if (
                specialist is None
                or specialist.role != Role.SPECIALIST
                or not specialist.active
                or c.department_id not in specialist.department_ids
            ):
                raise Invalid(
                    "that specialist does not serve this department",
                    code=ErrorCode.UNKNOWN_SPECIALIST,
                    fields=("specialist_id",),
                )
            self.check_practice(specialist, "specialist_id")
            event = EventKind.REASSIGNED if c.state == State.ACCEPTED else EventKind.ASSIGNED
            return tx.transition(
                c,
                Action.ASSIGN,
                event,
                {"specialist_id": specialist_id},
                assigned_specialist_id=specialist_id,
            )

        return await self.step(actor, consultation_id, step)

    async def escalate_overdue(self) -> list[Consultation]:
        """Escalate every request that waited longer than its urgency allows, or
        past its acceptance deadline (``deadlines``), whichever comes first.

        Called periodically by the app (through ``check_deadlines``) and directly
        by tests with a manual clock.
        """
        deadlines = self.ctx.deadlines

        def work(tx: Tx) -> list[tuple[Consultation, bool]]:
            now = tx.now
            cutoffs = {
                u: now - timedelta(seconds=min(s, deadlines.accept_after_seconds(u)))
                for u, s in self.escalate_after.items()
            }
            out = []
            for c in store.overdue_requests(tx.conn, cutoffs=cutoffs):
                # Escalated as the deadline falls (the waiting-time cutoffs count so too).
                late = now >= deadlines.accept_by(c)
                data: dict[str, Any] = {"waited_seconds": int((now - c.created_at).total_seconds())}
                if late:
                    data["deadline"] = "accept"
                escalated = tx.transition(
                    c, Action.ESCALATE, EventKind.ESCALATED, data, escalated=True
                )
                out.append((escalated, late))
            return out

        escalated = await self.write(None, work)
        for c, late in escalated:
            log.info("consultation=%s escalated%s", c.id, " (acceptance overdue)" if late else "")
            if late:
                await self.ctx.notifier.consultation_overdue(c, "accept")
            await self.notify(c)
        return [c for c, _ in escalated]

    async def flag_late_completions(self) -> list[Consultation]:
        """Mark every consultation that passed its completion deadline, once each:
        a ``completion_overdue`` timeline event and audit entry, a push to the
        coordinators (``consultation.overdue``) and to everyone who may see it.

        Waiting requests count too (their completion clock runs from the request
        as well). Called periodically by the app and directly by tests.
        """
        deadlines = self.ctx.deadlines

        def work(tx: Tx) -> list[Consultation]:
            now = tx.now
            candidates = store.open_without_event(
                tx.conn,
                states=[s.value for s in (*WAITING, *IN_HAND)],
                cutoffs={u.value: deadlines.earliest_complete_by(u, now) for u in Urgency},
                kind=EventKind.COMPLETION_OVERDUE,
            )
            late = []
            for c in candidates:
                due = deadlines.complete_by(c)
                if now <= due:
                    continue
                tx.event(
                    c.id,
                    EventKind.COMPLETION_OVERDUE,
                    {"due_at": due.isoformat(), "state": c.state},
                )
                tx.audit(
                    "consultation.completion_overdue",
                    "consultation",
                    c.id,
                    state=c.state,
                    due_at=due.isoformat(),
                )
                late.append(c)
            return late

        late = await self.write(None, work)
        for c in late:
            log.info("consultation=%s completion overdue", c.id)
            await self.ctx.notifier.consultation_overdue(c, "complete")
            await self.notify(c)
        return late

    async def check_deadlines(self) -> None:
        """The periodic check: escalate waiting requests, flag late completions."""
        await self.escalate_overdue()
        await self.flag_late_completions()

    # -- roster ---------------------------------------------------------------------

    async def roster(self, actor: Actor) -> list[RosterEntry]:
        """Current and future duty entries of the actor's hospital."""
        self.require_role(actor, Role.COORDINATOR, Role.SPECIALIST)
        now = self.clock.now()
        return await self.read(
            lambda conn: store.list_roster(
                conn, hospital_department_ids(conn, actor.account), ending_after=now
            )
        )

    async def on_duty(self, department_id: str, at: datetime | None = None) -> list[str]:
        """Ids of specialists on duty for a department at a moment (default now)."""
        moment = at or self.clock.now()
        entries = await self.read(
            lambda conn: store.list_roster(conn, [department_id], ending_after=moment)
        )
        return [e.account_id for e in entries if e.starts_at <= moment]

    async def add_roster_entry(
        self,
        actor: Actor,
        *,
        department_id: str,
        specialist_id: str,
        starts_at: datetime,
        ends_at: datetime,
    ) -> RosterEntry:
        """Put a specialist on duty."""
        self.require_role(actor, Role.COORDINATOR)
        if ends_at <= starts_at:
            raise Invalid("a duty must end after it starts", fields=("ends_at",))

        def work(tx: Tx) -> RosterEntry:
            if department_id not in hospital_department_ids(tx.conn, tx.account):
                raise Invalid(
                    "no such department",
                    code=ErrorCode.UNKNOWN_DEPARTMENT,
                    fields=("department_id",),
                )
            specialist = store.get_account(tx.conn, specialist_id)
            if specialist is None or department_id not in specialist.department_ids:
                raise Invalid(
                    "that specialist does not serve this department",
                    code=ErrorCode.UNKNOWN_SPECIALIST,
                    fields=("specialist_id",),
                )
            rid = store.add_roster_entry(
                tx.conn,
                department_id=department_id,
                account_id=specialist_id,
                starts_at=starts_at,
                ends_at=ends_at,
                created_by=tx.account.id,
            )
            tx.audit(
                "roster.add",
                "roster",
                rid,
                department_id=department_id,
                specialist_id=specialist_id,
            )
            return stored(store.get_roster_entry(tx.conn, rid))

        return await self.write(actor, work)

    async def remove_roster_entry(self, actor: Actor, entry_id: str) -> None:
        """Take an entry off the roster."""
        self.require_role(actor, Role.COORDINATOR)

        def work(tx: Tx) -> None:
            entry = store.get_roster_entry(tx.conn, entry_id)
            if entry is None or entry.department_id not in hospital_department_ids(
                tx.conn, tx.account
            ):
                raise NotFound("roster entry not found")
            store.delete_roster_entry(tx.conn, entry_id)
            tx.audit("roster.remove", "roster", entry_id)

        await self.write(actor, work)
