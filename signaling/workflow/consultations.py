"""Consultations: the request, what each side sees, and the call's place in it.

Each use case runs in one write transaction (see ``base``): the change, its
timeline event and its audit entry commit together; push notifications go out
after the commit. Matching (accept, decline, assign, escalation, roster) and the
signed opinion have services of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from records import documents as documents_store
from records import store
from records.models import (
    Account,
    Consent,
    Consultation,
    Department,
    Event,
    Institution,
    Opinion,
    Patient,
)
from records.vocab import ErrorCode, EventKind, InstitutionKind, Role
from signaling.errors import Forbidden, IllegalTransition, Invalid, NotFound, RuleViolation
from signaling.workflow import policy
from signaling.workflow.base import Actor, Service, Tx, stored
from signaling.workflow.deadlines import Deadline, Deadlines
from signaling.workflow.lifecycle import WAITING, Action, State, next_state


@dataclass(frozen=True, kw_only=True)
class ConsultationView:
    """A consultation with what a page shows beside it."""

    consultation: Consultation
    patient: Patient
    department: Department
    requesting_institution: Institution
    requested_by: Account | None
    assigned_specialist: Account | None
    consent: Consent | None
    events: list[Event]
    opinions: list[Opinion]
    deadline: Deadline | None = None


@dataclass(frozen=True, kw_only=True)
class Frame:
    """What a page frame shows of a consultation before its scripts load (no patient data)."""

    consultation: Consultation
    department: Department
    requesting_institution: Institution


@dataclass(frozen=True, kw_only=True)
class Brief:
    """A consultation in a list: with its patient and assigned specialist."""

    consultation: Consultation
    patient: Patient
    assigned_specialist: Account | None
    # The deadline it runs against now (None once closed); see ``deadlines``.
    deadline: Deadline | None = None


def briefs(
    conn: sa.Connection, items: list[Consultation], *, deadlines: Deadlines, now: datetime
) -> list[Brief]:
    """The list form of consultations (already checked as visible), with their clocks."""
    patients = store.get_patients(conn, (c.patient_id for c in items))
    specialists = store.get_accounts(
        conn, (c.assigned_specialist_id for c in items if c.assigned_specialist_id)
    )
    return [
        Brief(
            consultation=c,
            patient=patients[c.patient_id],
            assigned_specialist=(
                specialists[c.assigned_specialist_id] if c.assigned_specialist_id else None
            ),
            deadline=deadlines.current(c, now),
        )
        for c in items
    ]


def hospital_department_ids(conn: sa.Connection, account: Account) -> list[str]:
    """The departments of the account's hospital."""
    return [
        d.id for d, _ in store.list_departments(conn) if d.institution_id == account.institution_id
    ]


class ConsultationService(Service):
    """Request, list, read, cancel a consultation; join, run and end its call."""

    async def request(
        self,
        actor: Actor,
        *,
        patient_id: str,
        department_id: str,
        urgency: str,
        reason: str,
        question: str,
        target_specialist_id: str | None = None,
    ) -> Consultation:
        """A clinic doctor asks a department of a specialist hospital for a consultation."""
        self.require_role(actor, Role.CLINIC_DOCTOR)

        def work(tx: Tx) -> Consultation:
            tx.own_patient(patient_id)
            department = store.get_department(tx.conn, department_id)
            institution = (
                store.get_institution(tx.conn, department.institution_id) if department else None
            )
            if (
                department is None
                or institution is None
                or (institution.kind != InstitutionKind.SPECIALIST_HOSPITAL)
            ):
                raise Invalid(
                    "no such department",
                    code=ErrorCode.UNKNOWN_DEPARTMENT,
                    fields=("department_id",),
                )
            # Remote consultation is institution-to-institution: only a hospital the
            # clinic has an agreement with (医联体, 对口支援) may be asked.
            if (
                store.active_agreement(
                    tx.conn, tx.account.institution_id, department.institution_id
                )
                is None
            ):
                raise Forbidden(
                    "your institution has no agreement with this hospital",
                    code=ErrorCode.NO_AGREEMENT,
                    fields=("department_id",),
                )
            if target_specialist_id is not None:
                target = store.get_account(tx.conn, target_specialist_id)
                if (
                    target is None
                    or target.role != Role.SPECIALIST
                    or (department_id not in target.department_ids)
                    or not target.active
                ):
                    raise Invalid(
                        "that specialist does not serve this department",
                        code=ErrorCode.UNKNOWN_SPECIALIST,
                        fields=("target_specialist_id",),
                    )
            cid = store.add_consultation(
                tx.conn,
                patient_id=patient_id,
                requesting_institution_id=tx.account.institution_id,
                requested_by=tx.account.id,
                department_id=department_id,
                consulted_institution_id=department.institution_id,
                target_specialist_id=target_specialist_id,
                urgency=urgency,
                reason=reason,
                question=question,
                created_at=tx.now,
            )
            tx.event(cid, EventKind.REQUESTED, {"urgency": urgency, "department_id": department_id})
            tx.audit("consultation.request", "consultation", cid, patient_id=patient_id)
            return stored(store.get_consultation(tx.conn, cid))

        consultation = await self.write(actor, work)
        await self.notify(consultation)
        return consultation

    async def list_for(self, actor: Actor, *, states: list[str] | None = None) -> list[Brief]:
        """The consultations the actor may see (their clinic's, departments' or hospital's)."""
        account = actor.account

        def work(tx: Tx) -> list[Brief]:
            if account.role == Role.CLINIC_DOCTOR:
                items = store.list_consultations(
                    tx.conn,
                    requesting_institution_id=account.institution_id,
                    invited_account_id=account.id,
                    states=states,
                )
            elif account.role == Role.SPECIALIST:
                items = store.list_consultations(
                    tx.conn,
                    department_ids=account.department_ids,
                    assigned_specialist_id=account.id,
                    invited_account_id=account.id,
                    states=states,
                )
            elif account.role in policy.HOSPITAL_ROLES:
                items = store.list_consultations(
                    tx.conn,
                    department_ids=hospital_department_ids(tx.conn, account),
                    states=states,
                )
            else:
                items = []
            items = [c for c in items if policy.can_see(account, c)]
            tx.audit("consultation.list", "consultation", None, count=len(items))
            return briefs(tx.conn, items, deadlines=self.ctx.deadlines, now=tx.now)

        return await self.write(actor, work)

    async def queue(self, actor: Actor) -> list[Brief]:
        """Waiting requests for the actor's departments (or hospital), by urgency then age."""
        self.require_role(actor, Role.SPECIALIST, Role.COORDINATOR)
        account = actor.account

        def work(tx: Tx) -> list[Brief]:
            if account.role == Role.SPECIALIST:
                department_ids = list(account.department_ids)
            else:
                department_ids = hospital_department_ids(tx.conn, account)
            items = store.list_consultations(
                tx.conn,
                department_ids=department_ids,
                states=[s.value for s in WAITING],
                queue_order=True,
            )
            items = [c for c in items if policy.can_see(account, c)]
            tx.audit("consultation.queue", "consultation", None, count=len(items))
            return briefs(tx.conn, items, deadlines=self.ctx.deadlines, now=tx.now)

        return await self.write(actor, work)

    async def brief(self, consultation: Consultation) -> Brief:
        """The list form of a consultation the caller has just acted on (and may see)."""
        now = self.clock.now()
        return (
            await self.read(
                lambda conn: briefs(conn, [consultation], deadlines=self.ctx.deadlines, now=now)
            )
        )[0]

    async def view(self, actor: Actor, consultation_id: str) -> ConsultationView:
        """One consultation with its patient, timeline and signed documents."""

        def work(tx: Tx) -> ConsultationView:
            c = tx.consultation(consultation_id)
            conn = tx.conn
            view = ConsultationView(
                consultation=c,
                patient=stored(store.get_patient(conn, c.patient_id)),
                department=stored(store.get_department(conn, c.department_id)),
                requesting_institution=stored(
                    store.get_institution(conn, c.requesting_institution_id)
                ),
                requested_by=store.get_account(conn, c.requested_by),
                assigned_specialist=(
                    store.get_account(conn, c.assigned_specialist_id)
                    if c.assigned_specialist_id
                    else None
                ),
                consent=store.active_consent(conn, c.patient_id),
                events=store.list_events(conn, c.id),
                opinions=store.list_opinions(conn, c.id),
                deadline=self.ctx.deadlines.current(c, tx.now),
            )
            tx.audit("consultation.read", "consultation", c.id, patient_id=c.patient_id)
            return view

        return await self.write(actor, work)

    async def frame(
        self, actor: Actor, consultation_id: str, *, participant: bool = False
    ) -> Frame:
        """A consultation's page frame, for whoever may see it (``participant``: and
        takes part in its call); otherwise ``NotFound``, and the probe is audited.

        The frame holds no patient data (what the page shows of the patient comes
        from the audited API), so a successful look is not audited.
        """

        def work(tx: Tx) -> Frame:
            c = tx.consultation(consultation_id)
            if participant and not policy.is_participant(tx.account, c):
                raise NotFound("consultation not found", probe=("consultation", c.id))
            return Frame(
                consultation=c,
                department=stored(store.get_department(tx.conn, c.department_id)),
                requesting_institution=stored(
                    store.get_institution(tx.conn, c.requesting_institution_id)
                ),
            )

        return await self.write(actor, work)

    async def timeline(self, actor: Actor, consultation_id: str) -> list[Event]:
        """The consultation's timeline."""

        def work(tx: Tx) -> list[Event]:
            c = tx.consultation(consultation_id)
            events = store.list_events(tx.conn, c.id)
            tx.audit("timeline.read", "consultation", c.id)
            return events

        return await self.write(actor, work)

    async def events_after(self, actor: Actor, consultation_id: str, after_id: int) -> list[Event]:
        """Timeline events after ``after_id`` (what a reconnecting page missed)."""

        def work(tx: Tx) -> list[Event]:
            c = tx.consultation(consultation_id)
            events = store.list_events(tx.conn, c.id, after_id=after_id)
            tx.audit("timeline.read", "consultation", c.id, after=after_id)
            return events

        return await self.write(actor, work)

    async def cancel(self, actor: Actor, consultation_id: str, reason: str) -> Consultation:
        """The requesting clinic withdraws its request before the call.

        Only its own doctors: a doctor of another institution invited into the
        call sees the consultation and takes part, but the request is not theirs.
        """
        self.require_role(actor, Role.CLINIC_DOCTOR)

        def step(tx: Tx, c: Consultation) -> Consultation:
            if tx.account.institution_id != c.requesting_institution_id:
                raise Forbidden("only the requesting clinic cancels its request")
            return tx.transition(c, Action.CANCEL, EventKind.CANCELLED, {"reason": reason})

        return await self.step(actor, consultation_id, step)

    # -- the call -------------------------------------------------------------------

    async def call_access(self, actor: Actor, consultation_id: str) -> Consultation:
        """Check that the actor may join the consultation's call now.

        Raises:
            NotFound: not visible to the actor.
            Forbidden: visible but not a participant (``not_participant``).
            IllegalTransition: not accepted or live (``not_joinable``).
            RuleViolation: no recorded consent yet (``consent_required``).
        """

        def work(tx: Tx) -> Consultation:
            c = tx.consultation(consultation_id)
            tx.require_participant(c, "you are not a participant of this call")
            if c.state not in (State.ACCEPTED, State.LIVE):
                raise IllegalTransition(
                    f"the call of a consultation that is {c.state} cannot be joined",
                    code=ErrorCode.NOT_JOINABLE,
                )
            tx.require_consent(c)
            tx.audit("call.access", "consultation", c.id)
            return c

        return await self.write(actor, work)

    async def go_live(self, actor: Actor, consultation_id: str) -> Consultation:
        """The call starts; refused without the patient's consent."""

        def step(tx: Tx, c: Consultation) -> Consultation:
            next_state(c.state, Action.GO_LIVE)  # an illegal step is reported before consent
            tx.require_participant(c, "only the participants start the call")
            tx.require_consent(c)
            return tx.transition(c, Action.GO_LIVE, EventKind.LIVE)

        return await self.step(actor, consultation_id, step)

    async def end(self, actor: Actor, consultation_id: str) -> Consultation:
        """The clinic doctor or the specialist ends the call."""

        def step(tx: Tx, c: Consultation) -> Consultation:
            next_state(c.state, Action.END)
            tx.require_participant(c, "only the participants end the call")
            return tx.transition(c, Action.END, EventKind.ENDED)

        return await self.step(actor, consultation_id, step)

    async def invite(self, actor: Actor, consultation_id: str, username: str) -> Consultation:
        """A participant brings another doctor into the call (up to four people)."""

        def step(tx: Tx, seen: Consultation) -> Consultation:
            # Checked and changed under the row's lock, read again after taking it:
            # concurrent invites on PostgreSQL otherwise all passed the checks (7
            # participants in a call of 4; the same doctor invited five times).
            store.lock_consultation(tx.conn, seen.id)
            c = stored(store.get_consultation(tx.conn, seen.id))
            tx.require_participant(c, "only the participants invite")
            if c.state not in (State.ACCEPTED, State.LIVE):
                raise IllegalTransition(
                    f"cannot invite into a consultation that is {c.state}",
                    code=ErrorCode.NOT_JOINABLE,
                )
            found = store.get_login(tx.conn, username)
            invitee = found[0] if found else None
            if (
                invitee is None
                or not invitee.active
                or invitee.role not in (Role.CLINIC_DOCTOR, Role.SPECIALIST)
            ):
                raise Invalid(
                    "no such doctor", code=ErrorCode.UNKNOWN_ACCOUNT, fields=("username",)
                )
            if policy.is_participant(invitee, c):
                raise Invalid(
                    "already a participant",
                    code=ErrorCode.ALREADY_PARTICIPANT,
                    fields=("username",),
                )
            if invitee.role == Role.SPECIALIST:
                self.check_practice(invitee, "username")
            if len(c.invitee_ids) >= policy.MAX_PARTICIPANTS - 2:
                raise RuleViolation(
                    "a call has at most four participants", code=ErrorCode.CALL_FULL
                )
            store.add_invitee(
                tx.conn,
                consultation_id=c.id,
                account_id=invitee.id,
                invited_by=tx.account.id,
                at=tx.now,
            )
            tx.event(c.id, EventKind.INVITED, {"account_id": invitee.id})
            tx.audit("consultation.invite", "consultation", c.id, account_id=invitee.id)
            return stored(store.get_consultation(tx.conn, c.id))

        return await self.step(actor, consultation_id, step)

    async def call_event(
        self,
        actor: Actor,
        consultation_id: str,
        kind: EventKind,
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Put a call event (joined, left, chat) on the timeline, audited.

        The caller is a member of the call (checked when it joined). A chat line
        is relayed before this (see ``Calls``); the stored event confirms it.
        """
        payload = data or {}

        def work(tx: Tx) -> Event:
            at = tx.now
            eid = tx.event(consultation_id, kind, payload, at=at)
            tx.audit(f"call.{kind}", "consultation", consultation_id)
            return Event(
                id=eid,
                consultation_id=consultation_id,
                at=at,
                kind=kind,
                actor_id=actor.id,
                data=payload,
            )

        return await self.write(actor, work)

    async def document_event(
        self,
        actor: Actor,
        consultation_id: str,
        document_id: str,
        kind: EventKind,
        page: int | None,
    ) -> Event:
        """A participant opened (``document_opened``) or showed to all
        (``document_shown``) one of the patient's documents during the call.

        The event carries its offset from the call's start, so a replay can open
        the document at that moment.
        """

        def work(tx: Tx) -> Event:
            c = tx.consultation(consultation_id)
            tx.require_participant(c, "only the participants show documents")
            document = documents_store.get_document(tx.conn, document_id)
            if (
                document is None
                or document.patient_id != c.patient_id
                or document.consultation_id not in (None, c.id)
            ):
                raise NotFound("document not found", probe=("document", document_id))
            now = tx.now
            live = [e.at for e in store.list_events(tx.conn, c.id) if e.kind == "live"]
            offset = round((now - live[0]).total_seconds() * 1000) if live else 0
            eid = tx.event(
                c.id,
                kind,
                {
                    "document_id": document.id,
                    "title": document.title,
                    "page": page,
                    "offset_ms": offset,
                },
                at=now,
            )
            tx.audit(
                kind.replace("document_", "document."),
                "document",
                document.id,
                consultation_id=c.id,
                patient_id=c.patient_id,
            )
            return store.list_events(tx.conn, c.id, after_id=eid - 1)[0]

        return await self.write(actor, work)
