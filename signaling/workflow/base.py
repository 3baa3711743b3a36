"""What every workflow service shares: the transaction, visibility, the audit log.

A use case runs its database work as one synchronous function of a ``Tx`` on the
single writer (``Database.run_write``): the change, its timeline event and its
audit entry commit together, and nothing can await the network while the write
lock is held. Reads of patient data are audited, so they are writes too.

``Tx`` is the only door to the audit log (``Tx.audit``). A look at something the
actor may not see raises ``NotFound`` with a probe; the transaction rolls back
and the attempt itself is then audited in a transaction of its own, so that
probing across institutions leaves a trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa

from records import audit, store
from records.clock import Clock
from records.db import Database
from records.models import Account, Consultation, Patient
from records.store import lookups
from records.vocab import ErrorCode, EventKind, Role
from signaling.errors import Forbidden, IllegalTransition, NotFound, RuleViolation
from signaling.workflow import policy
from signaling.workflow.deadlines import Deadlines
from signaling.workflow.lifecycle import Action, next_state, sources

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who is acting, and from where (for the audit log)."""

    account: Account
    client_addr: str | None = None
    # The stored hash of the session the actor acts through (None: a command, a
    # test); the second factor's verification is kept per session.
    session: str | None = None

    @property
    def id(self) -> str:
        """The account id."""
        return self.account.id

    @property
    def role(self) -> str:
        """The account's role."""
        return self.account.role


class Notifier(Protocol):
    """Where a service says that a consultation changed (the push hub)."""

    async def consultation_changed(self, consultation: Consultation) -> None:
        """Tell whoever may see ``consultation`` that its state or people changed."""
        ...

    async def consultation_overdue(self, consultation: Consultation, deadline: str) -> None:
        """Tell the coordinators that ``consultation`` passed its ``deadline``
        (``accept`` or ``complete``)."""
        ...


class NoPushes:
    """A ``Notifier`` for commands that run without a server: nobody is connected."""

    async def consultation_changed(self, consultation: Consultation) -> None:
        """Nothing to tell."""

    async def consultation_overdue(self, consultation: Consultation, deadline: str) -> None:
        """Nothing to tell."""


@dataclass(frozen=True, kw_only=True)
class Context:
    """What every service is built with (one per app, made by the composition root)."""

    db: Database
    clock: Clock
    notifier: Notifier
    # By when consultations must be accepted and completed (the defaults of practice).
    deadlines: Deadlines = field(default_factory=Deadlines)


def denied_action(kind: str) -> str:
    """The audit action of a refused look at an object of ``kind``."""
    return f"{kind}.denied"


class Tx:
    """One write transaction on behalf of an actor (None: the system)."""

    def __init__(
        self,
        conn: sa.Connection,
        actor: Actor | None,
        clock: Clock,
        *,
        client_addr: str | None = None,
    ) -> None:
        """Wrap ``conn`` (inside ``Database.run_write``) for ``actor``.

        ``client_addr`` is where an anonymous request came from (a failed login).
        """
        self.conn = conn
        self.actor = actor
        self.client_addr = actor.client_addr if actor else client_addr
        self._clock = clock

    @property
    def now(self) -> datetime:
        """The injected clock's time."""
        return self._clock.now()

    @property
    def account(self) -> Account:
        """The acting account (a transaction without an actor has none)."""
        if self.actor is None:
            raise RuntimeError("a system transaction has no account")
        return self.actor.account

    def audit(self, action: str, object_type: str, object_id: str | None, **detail: Any) -> int:
        """Append one audit entry for the actor in this transaction; its sequence number."""
        return audit.append(
            self.conn,
            at=self.now,
            actor_id=self.actor.id if self.actor else None,
            action=action,
            object_type=object_type,
            object_id=object_id,
            client_addr=self.client_addr,
            detail=detail,
        )

    def event(
        self,
        consultation_id: str,
        kind: EventKind,
        data: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
        by_actor: bool = True,
    ) -> int:
        """Put an event on a consultation's timeline (by the actor unless told otherwise)."""
        return store.add_event(
            self.conn,
            consultation_id=consultation_id,
            at=at or self.now,
            kind=kind,
            actor_id=self.actor.id if self.actor and by_actor else None,
            data=data or {},
        )

    def consultation(self, consultation_id: str) -> Consultation:
        """The consultation if the actor may see it; otherwise ``NotFound``.

        The answer is exactly the one for an id that does not exist; the probe
        (who asked for which id) is audited after the rollback.
        """
        # The same statements whether it exists or not (see ``records.store.lookups``).
        c = lookups.consultation(self.conn, consultation_id)
        if c is None or not policy.can_see(self.account, c):
            raise NotFound("consultation not found", probe=("consultation", consultation_id))
        return c

    def own_patient(self, patient_id: str) -> Patient:
        """A patient of the actor's clinic (clinic doctors only); otherwise ``NotFound``."""
        patient = store.get_patient(self.conn, patient_id)
        account = self.account
        if (
            patient is None
            or not account.active
            or account.role != Role.CLINIC_DOCTOR
            or patient.institution_id != account.institution_id
        ):
            raise NotFound(
                "patient not found", fields=("patient_id",), probe=("patient", patient_id)
            )
        return patient

    def require_consent(self, consultation: Consultation) -> None:
        """Refuse a session without the patient's recorded, unwithdrawn consent."""
        if store.active_consent(self.conn, consultation.patient_id) is None:
            raise RuleViolation(
                "the patient's informed consent must be recorded before the session",
                code=ErrorCode.CONSENT_REQUIRED,
            )

    def require_participant(self, consultation: Consultation, message: str) -> None:
        """Refuse someone who takes no part in the consultation's call."""
        if not policy.is_participant(self.account, consultation):
            raise Forbidden(message, code=ErrorCode.NOT_PARTICIPANT)

    def transition(
        self,
        consultation: Consultation,
        action: Action,
        event: EventKind,
        event_data: dict[str, Any] | None = None,
        **values: Any,
    ) -> Consultation:
        """Move the consultation by ``action``, with its timeline event and audit entry.

        One conditional UPDATE decides between concurrent steps (two accepts):
        the loser gets ``IllegalTransition``.
        """
        target = next_state(consultation.state, action)
        now = self.now
        changed = store.change_state(
            self.conn,
            consultation.id,
            from_states=[s.value for s in sources(action)],
            to_state=target.value,
            at=now,
            **values,
        )
        if not changed:
            current = store.get_consultation(self.conn, consultation.id)
            state = current.state if current else "gone"
            raise IllegalTransition(f"cannot {action.value} a consultation that is {state}")
        self.event(consultation.id, event, event_data or {})
        self.audit(
            f"consultation.{action.value}", "consultation", consultation.id, state=target.value
        )
        return stored(store.get_consultation(self.conn, consultation.id))


def stored(row: T | None) -> T:
    """A row written earlier in the same transaction (so it is there)."""
    if row is None:
        raise RuntimeError("a row written in this transaction is missing")
    return row


class ReadTx(Tx):
    """A ``Tx`` on a read transaction (``Service.checked``): the same checks, no writes.

    Nothing written here would be committed, so an audit entry or an event is
    refused loudly rather than lost.
    """

    def audit(self, action: str, object_type: str, object_id: str | None, **detail: Any) -> int:
        """Refused: a read transaction commits nothing."""
        raise RuntimeError("a read transaction cannot audit; use Service.write")

    def event(
        self,
        consultation_id: str,
        kind: EventKind,
        data: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
        by_actor: bool = True,
    ) -> int:
        """Refused: a read transaction commits nothing."""
        raise RuntimeError("a read transaction cannot add events; use Service.write")


class Service:
    """The base of the workflow services (see the module docstring)."""

    def __init__(self, ctx: Context, *, denied: Callable[[str], str] = denied_action) -> None:
        """Wire the service with the app's context; ``denied`` names refused looks."""
        self.ctx = ctx
        self.db = ctx.db
        self.clock = ctx.clock
        self._denied = denied

    async def write(
        self,
        actor: Actor | None,
        work: Callable[[Tx], T],
        *,
        client_addr: str | None = None,
        at_once: bool = False,
    ) -> T:
        """Run ``work`` in one write transaction for ``actor``; audit a refused probe.

        ``actor`` None is the system (or an anonymous caller from ``client_addr``).
        ``at_once``: the transaction in one hop to the database's thread
        (``Database.run_write_at_once``), for an open someone waits on.
        """
        run = self.db.run_write_at_once if at_once else self.db.run_write
        try:
            return await run(
                lambda conn: work(Tx(conn, actor, self.clock, client_addr=client_addr))
            )
        except NotFound as exc:
            if exc.probe is not None:
                await self.audit_refusal(actor, *exc.probe, client_addr=client_addr)
            raise

    async def checked(self, actor: Actor, work: Callable[[Tx], T]) -> T:
        """Run ``work`` on a read transaction for ``actor``; audit a refused probe.

        For checks that write nothing (a player's request for more of a file it
        may replay): the same visibility rules as ``write``, without queueing
        behind the single writer. ``work`` may not audit (``ReadTx`` refuses).
        """
        try:
            return await self.db.run_read(lambda conn: work(ReadTx(conn, actor, self.clock)))
        except NotFound as exc:
            if exc.probe is not None:
                await self.audit_refusal(actor, *exc.probe)
            raise

    async def audit_refusal(
        self,
        actor: Actor | None,
        kind: str,
        object_id: str,
        *,
        client_addr: str | None = None,
        **detail: Any,
    ) -> None:
        """Audit a refused look at ``kind`` ``object_id`` in a transaction of its own.

        Every refusal of an id is audited the same way whether the object exists
        or not (one entry, the same action), so that the log shows every probe and
        the work done does not tell the two apart. ``detail`` says why, when the
        refusal came before any look (a role check).
        """

        def record(tx: Tx) -> None:
            tx.audit(self._denied(kind), kind, object_id, **detail)

        await self.db.run_write(
            lambda conn: record(Tx(conn, actor, self.clock, client_addr=client_addr))
        )

    async def read(self, work: Callable[[sa.Connection], T]) -> T:
        """Run ``work`` in a read transaction (not audited: no patient data here)."""
        return await self.db.run_read(work)

    async def step(
        self,
        actor: Actor,
        consultation_id: str,
        work: Callable[[Tx, Consultation], Consultation],
    ) -> Consultation:
        """Apply ``work(tx, consultation)`` to a consultation the actor may see; notify."""
        c = await self.write(actor, lambda tx: work(tx, tx.consultation(consultation_id)))
        await self.notify(c)
        return c

    async def notify(self, consultation: Consultation) -> None:
        """Tell whoever may see it that ``consultation`` changed (after the commit)."""
        await self.ctx.notifier.consultation_changed(consultation)

    @staticmethod
    def require_role(actor: Actor, *roles: Role) -> None:
        """Refuse an actor whose role is not one of ``roles``."""
        if actor.role not in roles:
            raise Forbidden("your role does not allow this", code=ErrorCode.ROLE_FORBIDDEN)

    def check_practice(self, account: Account, field: str | None = None) -> None:
        """Refuse a specialist with under three years of independent practice."""
        if not policy.may_practise_remotely(account, self.clock.now().date()):
            raise RuleViolation(
                "a specialist needs at least 3 years of independent practice "
                "to give remote consultations",
                code=ErrorCode.PRACTICE_TOO_SHORT,
                fields=(field,) if field else (),
            )
