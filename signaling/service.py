"""The consultation service: every use case of the workflow, with its rules.

Each method runs in one write transaction: the change, its timeline event and its
audit entry commit together. Reads of patient data are audited too, so they use
write transactions as well. Push notifications go out after the commit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from records import audit, store, summary
from records import documents as documents_store
from records.clock import Clock
from records.db import Database
from records.models import (
    Account,
    Consent,
    Consultation,
    Department,
    Event,
    Institution,
    Opinion,
    Patient,
    RosterEntry,
)
from signaling import policy
from signaling.access import Actor, Audited
from signaling.errors import Forbidden, IllegalTransition, Invalid, NotFound, RuleViolation
from signaling.hub import Hub, consultation_changed
from signaling.lifecycle import WAITING, Action, State, next_state, sources

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, kw_only=True)
class Brief:
    """A consultation in a list: with its patient and assigned specialist."""

    consultation: Consultation
    patient: Patient
    assigned_specialist: Account | None


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """The bytes a signature's SHA-256 is taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


class ConsultationService:
    """Use cases of the consultation workflow (see ``lifecycle.py`` for the states)."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        hub: Hub,
        escalate_after: Mapping[str, int],
    ) -> None:
        """Wire the service.

        Args:
            db: the system of record.
            clock: the source of time (tests inject a manual one).
            hub: where change notifications are pushed.
            escalate_after: seconds a request of each urgency waits before it is
                escalated to the coordinators.
        """
        self.db = db
        self.clock = clock
        self.hub = hub
        self.escalate_after = dict(escalate_after)
        self._audited = Audited(db, clock)

    # -- helpers --------------------------------------------------------------------

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: Actor | None,
        action: str,
        object_type: str,
        object_id: str | None,
        **detail: Any,
    ) -> None:
        await self._audited.audit(conn, actor, action, object_type, object_id, **detail)

    def _tx(self, actor: Actor) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction on behalf of ``actor`` (refused probes audited; see access.py)."""
        return self._audited.tx(actor)

    async def _visible(
        self, conn: AsyncConnection, actor: Actor, consultation_id: str
    ) -> Consultation:
        consultation = await store.get_consultation(conn, consultation_id)
        if consultation is None or not policy.can_see(actor.account, consultation):
            # Answer exactly as for an id that does not exist; ``_tx`` records
            # the probe (who asked for which id) after the rollback.
            raise NotFound("consultation not found", probe=("consultation", consultation_id))
        return consultation

    async def _own_patient(self, conn: AsyncConnection, actor: Actor, patient_id: str) -> Patient:
        patient = await store.get_patient(conn, patient_id)
        if (
            patient is None
            or actor.role != "clinic_doctor"
            or patient.institution_id != actor.account.institution_id
        ):
            raise NotFound(
                "patient not found", fields=("patient_id",), probe=("patient", patient_id)
            )
        return patient

    async def _transition(
        self,
        conn: AsyncConnection,
        actor: Actor | None,
        consultation: Consultation,
        action: Action,
        event: str,
        event_data: dict[str, Any] | None = None,
        **values: Any,
    ) -> Consultation:
        target = next_state(consultation.state, action)
        now = self.clock.now()
        changed = await store.change_state(
            conn,
            consultation.id,
            from_states=[s.value for s in sources(action)],
            to_state=target.value,
            at=now,
            **values,
        )
        if not changed:
            # Someone else moved it first (the losing one of two concurrent accepts).
            current = await store.get_consultation(conn, consultation.id)
            state = current.state if current else "gone"
            raise IllegalTransition(f"cannot {action.value} a consultation that is {state}")
        await store.add_event(
            conn,
            consultation_id=consultation.id,
            at=now,
            kind=event,
            actor_id=actor.id if actor else None,
            data=event_data or {},
        )
        await self._audit(
            conn,
            actor,
            f"consultation.{action.value}",
            "consultation",
            consultation.id,
            state=target.value,
        )
        updated = await store.get_consultation(conn, consultation.id)
        assert updated is not None  # noqa: S101 - changed in this transaction
        return updated

    async def _notify(self, consultation: Consultation) -> None:
        await self.hub.publish(
            consultation_changed(consultation), lambda acc: policy.can_see(acc, consultation)
        )

    async def _briefs(self, conn: AsyncConnection, items: list[Consultation]) -> list[Brief]:
        patients = await store.get_patients(conn, (c.patient_id for c in items))
        specialists = await store.get_accounts(
            conn, (c.assigned_specialist_id for c in items if c.assigned_specialist_id)
        )
        return [
            Brief(
                consultation=c,
                patient=patients[c.patient_id],
                assigned_specialist=(
                    specialists[c.assigned_specialist_id] if c.assigned_specialist_id else None
                ),
            )
            for c in items
        ]

    async def brief(self, consultation: Consultation) -> Brief:
        """The list form of a consultation the caller has just acted on (and may see)."""
        async with self.db.read() as conn:
            return (await self._briefs(conn, [consultation]))[0]

    def _require_role(self, actor: Actor, *roles: str) -> None:
        if actor.role not in roles:
            raise Forbidden("your role does not allow this", code="role_forbidden")

    def _check_practice(self, account: Account, field: str | None = None) -> None:
        if not policy.may_practise_remotely(account, self.clock.now().date()):
            raise RuleViolation(
                "a specialist needs at least 3 years of independent practice "
                "to give remote consultations",
                code="practice_too_short",
                fields=(field,) if field else (),
            )

    # -- directory ------------------------------------------------------------------

    async def departments(self) -> list[tuple[Department, Institution]]:
        """Departments of specialist hospitals that accept requests."""
        async with self.db.read() as conn:
            return await store.list_departments(conn, institution_kind="specialist_hospital")

    async def specialists(self, department_id: str) -> list[Account]:
        """Specialists serving a department."""
        async with self.db.read() as conn:
            return await store.list_accounts(conn, role="specialist", department_id=department_id)

    async def institutions(self) -> list[Institution]:
        """Every institution (names for display; no patient data)."""
        async with self.db.read() as conn:
            return await store.list_institutions(conn)

    async def all_departments(self) -> list[tuple[Department, Institution]]:
        """Every department of every institution."""
        async with self.db.read() as conn:
            return await store.list_departments(conn)

    async def people(self, account_ids: list[str]) -> dict[str, Account]:
        """Staff accounts by id, for names on timelines and rosters."""
        async with self.db.read() as conn:
            return await store.get_accounts(conn, account_ids)

    async def active_consents(self, patient_ids: list[str]) -> dict[str, Consent]:
        """The current consultation consent of each patient that has one.

        Only for patients the caller has just been allowed to list (the listing is
        the audited read).
        """
        async with self.db.read() as conn:
            out = {}
            for pid in patient_ids:
                consent = await store.active_consent(conn, pid)
                if consent is not None:
                    out[pid] = consent
            return out

    async def account(self, account_id: str) -> Account | None:
        """An account by id (no patient data)."""
        async with self.db.read() as conn:
            return await store.get_account(conn, account_id)

    # -- patients and consent -------------------------------------------------------

    async def register_patient(
        self,
        actor: Actor,
        *,
        name: str,
        sex: str,
        birth_date: date,
        national_id: str,
        phone: str | None,
    ) -> Patient:
        """Register a patient at the clinic doctor's institution."""
        self._require_role(actor, "clinic_doctor")
        async with self._tx(actor) as conn:
            pid = await store.add_patient(
                conn,
                institution_id=actor.account.institution_id,
                name=name,
                sex=sex,
                birth_date=birth_date,
                national_id=national_id,
                phone=phone,
                created_by=actor.id,
                created_at=self.clock.now(),
            )
            await self._audit(conn, actor, "patient.create", "patient", pid)
            patient = await store.get_patient(conn, pid)
        assert patient is not None  # noqa: S101
        return patient

    async def list_patients(self, actor: Actor) -> list[Patient]:
        """The clinic's patients."""
        self._require_role(actor, "clinic_doctor")
        async with self._tx(actor) as conn:
            patients = await store.list_patients(conn, actor.account.institution_id)
            await self._audit(conn, actor, "patient.list", "patient", None, count=len(patients))
        return patients

    async def get_patient(self, actor: Actor, patient_id: str) -> tuple[Patient, list[Consent]]:
        """A patient of the clinic with their consents."""
        async with self._tx(actor) as conn:
            patient = await self._own_patient(conn, actor, patient_id)
            consents = await store.list_consents(conn, patient_id)
            await self._audit(conn, actor, "patient.read", "patient", patient_id)
        return patient, consents

    async def record_consent(
        self,
        actor: Actor,
        patient_id: str,
        *,
        scope_consultation: bool,
        scope_recording: bool,
        given_by: str,
        relationship: str,
    ) -> Consent:
        """Record the patient's (or guardian's) informed consent, taken by the actor."""
        if not scope_consultation and scope_recording:
            raise Invalid(
                "recording consent requires consent to the consultation",
                fields=("scope_consultation",),
            )
        if not scope_consultation:
            raise Invalid("a consent must cover the consultation", fields=("scope_consultation",))
        async with self._tx(actor) as conn:
            await self._own_patient(conn, actor, patient_id)
            cid = await store.add_consent(
                conn,
                patient_id=patient_id,
                scope_consultation=scope_consultation,
                scope_recording=scope_recording,
                given_by=given_by,
                relationship=relationship,
                taken_by=actor.id,
                given_at=self.clock.now(),
            )
            await self._audit(
                conn,
                actor,
                "consent.create",
                "consent",
                cid,
                patient_id=patient_id,
                recording=scope_recording,
            )
            consent = await store.get_consent(conn, cid)
        assert consent is not None  # noqa: S101
        return consent

    async def withdraw_consent(self, actor: Actor, patient_id: str, consent_id: str) -> Consent:
        """Withdraw a consent; live sessions are not cut, but no new one may start."""
        async with self._tx(actor) as conn:
            await self._own_patient(conn, actor, patient_id)
            consent = await store.get_consent(conn, consent_id)
            if consent is None or consent.patient_id != patient_id:
                raise NotFound("consent not found", fields=("consent_id",))
            if not await store.withdraw_consent(conn, consent_id, at=self.clock.now(), by=actor.id):
                raise IllegalTransition("consent already withdrawn", code="already_withdrawn")
            await self._audit(conn, actor, "consent.withdraw", "consent", consent_id)
            consent = await store.get_consent(conn, consent_id)
        assert consent is not None  # noqa: S101
        return consent

    # -- requests -------------------------------------------------------------------

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
        self._require_role(actor, "clinic_doctor")
        async with self._tx(actor) as conn:
            await self._own_patient(conn, actor, patient_id)
            department = await store.get_department(conn, department_id)
            institution = (
                await store.get_institution(conn, department.institution_id) if department else None
            )
            if (
                department is None
                or institution is None
                or (institution.kind != "specialist_hospital")
            ):
                raise Invalid(
                    "no such department", code="unknown_department", fields=("department_id",)
                )
            if target_specialist_id is not None:
                target = await store.get_account(conn, target_specialist_id)
                if (
                    target is None
                    or target.role != "specialist"
                    or (department_id not in target.department_ids)
                    or not target.active
                ):
                    raise Invalid(
                        "that specialist does not serve this department",
                        code="unknown_specialist",
                        fields=("target_specialist_id",),
                    )
            now = self.clock.now()
            cid = await store.add_consultation(
                conn,
                patient_id=patient_id,
                requesting_institution_id=actor.account.institution_id,
                requested_by=actor.id,
                department_id=department_id,
                consulted_institution_id=department.institution_id,
                target_specialist_id=target_specialist_id,
                urgency=urgency,
                reason=reason,
                question=question,
                created_at=now,
            )
            await store.add_event(
                conn,
                consultation_id=cid,
                at=now,
                kind="requested",
                actor_id=actor.id,
                data={"urgency": urgency, "department_id": department_id},
            )
            await self._audit(
                conn, actor, "consultation.request", "consultation", cid, patient_id=patient_id
            )
            consultation = await store.get_consultation(conn, cid)
        assert consultation is not None  # noqa: S101
        await self._notify(consultation)
        return consultation

    async def list_for(self, actor: Actor, *, states: list[str] | None = None) -> list[Brief]:
        """The consultations the actor may see (their clinic's, departments' or hospital's)."""
        account = actor.account
        async with self._tx(actor) as conn:
            if account.role == "clinic_doctor":
                items = await store.list_consultations(
                    conn,
                    requesting_institution_id=account.institution_id,
                    invited_account_id=account.id,
                    states=states,
                )
            elif account.role == "specialist":
                items = await store.list_consultations(
                    conn,
                    department_ids=account.department_ids,
                    assigned_specialist_id=account.id,
                    invited_account_id=account.id,
                    states=states,
                )
            elif account.role in policy.HOSPITAL_ROLES:
                departments = [
                    d.id
                    for d, _ in await store.list_departments(conn)
                    if d.institution_id == account.institution_id
                ]
                items = await store.list_consultations(
                    conn, department_ids=departments, states=states
                )
            else:
                items = []
            items = [c for c in items if policy.can_see(account, c)]
            await self._audit(
                conn, actor, "consultation.list", "consultation", None, count=len(items)
            )
            return await self._briefs(conn, items)

    async def queue(self, actor: Actor) -> list[Brief]:
        """Waiting requests for the actor's departments (or hospital), by urgency then age."""
        self._require_role(actor, "specialist", "coordinator")
        account = actor.account
        async with self._tx(actor) as conn:
            if account.role == "specialist":
                department_ids = list(account.department_ids)
            else:
                department_ids = [
                    d.id
                    for d, _ in await store.list_departments(conn)
                    if d.institution_id == account.institution_id
                ]
            items = await store.list_consultations(
                conn,
                department_ids=department_ids,
                states=[s.value for s in WAITING],
                queue_order=True,
            )
            items = [c for c in items if policy.can_see(account, c)]
            await self._audit(
                conn, actor, "consultation.queue", "consultation", None, count=len(items)
            )
            return await self._briefs(conn, items)

    async def view(self, actor: Actor, consultation_id: str) -> ConsultationView:
        """One consultation with its patient, timeline and signed documents."""
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            patient = await store.get_patient(conn, c.patient_id)
            department = await store.get_department(conn, c.department_id)
            institution = await store.get_institution(conn, c.requesting_institution_id)
            assert patient and department and institution  # noqa: S101 - foreign keys
            view = ConsultationView(
                consultation=c,
                patient=patient,
                department=department,
                requesting_institution=institution,
                requested_by=await store.get_account(conn, c.requested_by),
                assigned_specialist=(
                    await store.get_account(conn, c.assigned_specialist_id)
                    if c.assigned_specialist_id
                    else None
                ),
                consent=await store.active_consent(conn, c.patient_id),
                events=await store.list_events(conn, c.id),
                opinions=await store.list_opinions(conn, c.id),
            )
            await self._audit(
                conn, actor, "consultation.read", "consultation", c.id, patient_id=c.patient_id
            )
        return view

    # -- matching -------------------------------------------------------------------

    async def accept(self, actor: Actor, consultation_id: str) -> Consultation:
        """A specialist of the department takes the request."""
        self._require_role(actor, "specialist")
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            self._check_practice(actor.account)
            if c.target_specialist_id and c.target_specialist_id != actor.id and not c.escalated:
                raise Forbidden(
                    "this request is addressed to another specialist",
                    code="addressed_to_other",
                )
            c = await self._transition(
                conn,
                actor,
                c,
                Action.ACCEPT,
                "accepted",
                {"specialist_id": actor.id},
                assigned_specialist_id=actor.id,
            )
        await self._notify(c)
        return c

    async def decline(self, actor: Actor, consultation_id: str, reason: str) -> Consultation:
        """The hospital declines the request (a specialist of the department or a coordinator)."""
        self._require_role(actor, "specialist", "coordinator")
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            c = await self._transition(
                conn,
                actor,
                c,
                Action.DECLINE,
                "declined",
                {"reason": reason},
                decline_reason=reason,
            )
        await self._notify(c)
        return c

    async def assign(self, actor: Actor, consultation_id: str, specialist_id: str) -> Consultation:
        """A coordinator assigns (or reassigns) the consultation to a specialist."""
        self._require_role(actor, "coordinator")
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            specialist = await store.get_account(conn, specialist_id)
            if (
                specialist is None
                or specialist.role != "specialist"
                or not specialist.active
                or c.department_id not in specialist.department_ids
            ):
                raise Invalid(
                    "that specialist does not serve this department",
                    code="unknown_specialist",
                    fields=("specialist_id",),
                )
            self._check_practice(specialist, "specialist_id")
            event = "reassigned" if c.state == State.ACCEPTED else "assigned"
            c = await self._transition(
                conn,
                actor,
                c,
                Action.ASSIGN,
                event,
                {"specialist_id": specialist_id},
                assigned_specialist_id=specialist_id,
            )
        await self._notify(c)
        return c

    async def cancel(self, actor: Actor, consultation_id: str, reason: str) -> Consultation:
        """The requesting clinic withdraws its request before the call."""
        self._require_role(actor, "clinic_doctor")
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            c = await self._transition(
                conn, actor, c, Action.CANCEL, "cancelled", {"reason": reason}
            )
        await self._notify(c)
        return c

    async def go_live(self, actor: Actor, consultation_id: str) -> Consultation:
        """The call starts; refused without the patient's consent."""
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            next_state(c.state, Action.GO_LIVE)  # an illegal step is reported before consent
            if not policy.is_participant(actor.account, c):
                raise Forbidden("only the participants start the call", code="not_participant")
            if await store.active_consent(conn, c.patient_id) is None:
                raise RuleViolation(
                    "the patient's informed consent must be recorded before the session",
                    code="consent_required",
                )
            c = await self._transition(conn, actor, c, Action.GO_LIVE, "live")
        await self._notify(c)
        return c

    async def end(self, actor: Actor, consultation_id: str) -> Consultation:
        """The clinic doctor or the specialist ends the call."""
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            next_state(c.state, Action.END)
            if not policy.is_participant(actor.account, c):
                raise Forbidden("only the participants end the call", code="not_participant")
            c = await self._transition(conn, actor, c, Action.END, "ended")
        await self._notify(c)
        return c

    async def sign(
        self, actor: Actor, consultation_id: str, *, kind: str, body: dict[str, Any]
    ) -> Opinion:
        """The assigned specialist signs the opinion (``kind='opinion'``) or refers
        the patient to an in-person visit (``kind='referral'``)."""
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            action = Action.SIGN if kind == "opinion" else Action.REFER
            next_state(c.state, action)  # the state is checked before the person
            if actor.id != c.assigned_specialist_id:
                raise Forbidden("only the assigned specialist signs", code="not_assigned")
            now = self.clock.now()
            digest = hashlib.sha256(canonical_json(body)).hexdigest()
            c = await self._transition(
                conn,
                actor,
                c,
                action,
                "signed" if kind == "opinion" else "referred",
                {"sha256": digest},
            )
            oid = await store.add_opinion(
                conn,
                consultation_id=c.id,
                author_id=actor.id,
                kind=kind,
                body=body,
                signed_at=now,
                sha256=digest,
            )
            opinion = next(o for o in await store.list_opinions(conn, c.id) if o.id == oid)
        await self._notify(c)
        return opinion

    async def addendum(
        self, actor: Actor, consultation_id: str, parent_id: str, body: dict[str, Any]
    ) -> Opinion:
        """The author adds to their signed opinion or referral.

        The addendum is signed on submission with its own hash and names its
        parent; the signed original is never changed.
        """
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            if c.state not in (State.SIGNED, State.REFERRED):
                raise IllegalTransition(
                    f"only a signed opinion takes an addendum; the consultation is {c.state}",
                    code="not_signed",
                )
            parent = await summary.get_opinion(conn, parent_id)
            if parent is None or parent.consultation_id != c.id or parent.kind == "addendum":
                raise NotFound("opinion not found", fields=("opinion_id",))
            if actor.id != parent.author_id:
                raise Forbidden("only the author adds to a signed opinion", code="not_author")
            now = self.clock.now()
            digest = hashlib.sha256(canonical_json(body)).hexdigest()
            oid = await store.add_opinion(
                conn,
                consultation_id=c.id,
                author_id=actor.id,
                kind="addendum",
                parent_id=parent.id,
                body=body,
                signed_at=now,
                sha256=digest,
            )
            await store.add_event(
                conn,
                consultation_id=c.id,
                at=now,
                kind="addendum",
                actor_id=actor.id,
                data={"opinion_id": oid, "parent_id": parent.id, "sha256": digest},
            )
            await self._audit(
                conn,
                actor,
                "consultation.addendum",
                "consultation",
                c.id,
                opinion_id=oid,
                parent_id=parent.id,
                sha256=digest,
            )
            opinion = await summary.get_opinion(conn, oid)
        assert opinion is not None  # noqa: S101 - stored in this transaction
        await self._notify(c)
        return opinion

    async def timeline(self, actor: Actor, consultation_id: str) -> list[Event]:
        """The consultation's timeline."""
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            events = await store.list_events(conn, c.id)
            await self._audit(conn, actor, "timeline.read", "consultation", c.id)
        return events

    # -- the call -------------------------------------------------------------------

    async def invite(self, actor: Actor, consultation_id: str, username: str) -> Consultation:
        """A participant brings another doctor into the call (up to four people)."""
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            if not policy.is_participant(actor.account, c):
                raise Forbidden("only the participants invite", code="not_participant")
            if c.state not in (State.ACCEPTED, State.LIVE):
                raise IllegalTransition(
                    f"cannot invite into a consultation that is {c.state}", code="not_joinable"
                )
            found = await store.get_login(conn, username)
            invitee = found[0] if found else None
            if (
                invitee is None
                or not invitee.active
                or invitee.role not in ("clinic_doctor", "specialist")
            ):
                raise Invalid("no such doctor", code="unknown_account", fields=("username",))
            if policy.is_participant(invitee, c):
                raise Invalid(
                    "already a participant", code="already_participant", fields=("username",)
                )
            if invitee.role == "specialist":
                self._check_practice(invitee, "username")
            if len(c.invitee_ids) >= policy.MAX_PARTICIPANTS - 2:
                raise RuleViolation("a call has at most four participants", code="call_full")
            now = self.clock.now()
            await store.add_invitee(
                conn, consultation_id=c.id, account_id=invitee.id, invited_by=actor.id, at=now
            )
            await store.add_event(
                conn,
                consultation_id=c.id,
                at=now,
                kind="invited",
                actor_id=actor.id,
                data={"account_id": invitee.id},
            )
            await self._audit(
                conn, actor, "consultation.invite", "consultation", c.id, account_id=invitee.id
            )
            updated = await store.get_consultation(conn, c.id)
        assert updated is not None  # noqa: S101
        await self._notify(updated)
        return updated

    async def call_access(self, actor: Actor, consultation_id: str) -> Consultation:
        """Check that the actor may join the consultation's call now.

        Raises:
            NotFound: not visible to the actor.
            Forbidden: visible but not a participant (``not_participant``).
            IllegalTransition: not accepted or live (``not_joinable``).
            RuleViolation: no recorded consent yet (``consent_required``).
        """
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            if not policy.is_participant(actor.account, c):
                raise Forbidden("you are not a participant of this call", code="not_participant")
            if c.state not in (State.ACCEPTED, State.LIVE):
                raise IllegalTransition(
                    f"the call of a consultation that is {c.state} cannot be joined",
                    code="not_joinable",
                )
            if await store.active_consent(conn, c.patient_id) is None:
                raise RuleViolation(
                    "the patient's informed consent must be recorded before the session",
                    code="consent_required",
                )
            await self._audit(conn, actor, "call.access", "consultation", c.id)
        return c

    async def call_event(
        self, actor: Actor, consultation_id: str, kind: str, data: dict[str, Any] | None = None
    ) -> Event:
        """Put a call event (joined, left, chat) on the timeline, audited.

        The caller is a member of the call (checked when it joined). The event
        row and its audit entry are written in one transaction (``run_write``).
        A chat line is relayed before this (see ``Calls``); the stored event
        confirms it.
        """
        now = self.clock.now()
        payload = data or {}

        def write(conn: Any) -> int:
            eid = store.add_event_sync(
                conn,
                consultation_id=consultation_id,
                at=now,
                kind=kind,
                actor_id=actor.id,
                data=payload,
            )
            audit.append_sync(
                conn,
                at=now,
                actor_id=actor.id,
                action=f"call.{kind}",
                object_type="consultation",
                object_id=consultation_id,
                client_addr=actor.client_addr,
                detail={},
            )
            return eid

        eid = await self.db.run_write(write)
        return Event(
            id=eid,
            consultation_id=consultation_id,
            at=now,
            kind=kind,
            actor_id=actor.id,
            data=payload,
        )

    async def document_event(
        self, actor: Actor, consultation_id: str, document_id: str, kind: str, page: int | None
    ) -> Event:
        """A participant opened (``document_opened``) or showed to all
        (``document_shown``) one of the patient's documents during the call.

        The event carries its offset from the call's start, so a replay can open
        the document at that moment.
        """
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            if not policy.is_participant(actor.account, c):
                raise Forbidden("only the participants show documents", code="not_participant")
            document = await documents_store.get_document(conn, document_id)
            if (
                document is None
                or document.patient_id != c.patient_id
                or document.consultation_id not in (None, c.id)
            ):
                raise NotFound("document not found", probe=("document", document_id))
            now = self.clock.now()
            live = [e.at for e in await store.list_events(conn, c.id) if e.kind == "live"]
            offset = round((now - live[0]).total_seconds() * 1000) if live else 0
            eid = await store.add_event(
                conn,
                consultation_id=c.id,
                at=now,
                kind=kind,
                actor_id=actor.id,
                data={
                    "document_id": document.id,
                    "title": document.title,
                    "page": page,
                    "offset_ms": offset,
                },
            )
            await self._audit(
                conn,
                actor,
                kind.replace("document_", "document."),
                "document",
                document.id,
                consultation_id=c.id,
                patient_id=c.patient_id,
            )
            events = await store.list_events(conn, c.id, after_id=eid - 1)
        return events[0]

    async def events_after(self, actor: Actor, consultation_id: str, after_id: int) -> list[Event]:
        """Timeline events after ``after_id`` (what a reconnecting page missed)."""
        async with self._tx(actor) as conn:
            c = await self._visible(conn, actor, consultation_id)
            events = await store.list_events(conn, c.id, after_id=after_id)
            await self._audit(conn, actor, "timeline.read", "consultation", c.id, after=after_id)
        return events

    # -- escalation -----------------------------------------------------------------

    async def escalate_overdue(self) -> list[Consultation]:
        """Escalate every request that waited longer than its urgency allows.

        Called periodically by the app and directly by tests with a manual clock.
        """
        now = self.clock.now()
        cutoffs = {u: now - timedelta(seconds=s) for u, s in self.escalate_after.items()}
        escalated = []
        async with self.db.write() as conn:
            for c in await store.overdue_requests(conn, cutoffs=cutoffs):
                waited = int((now - c.created_at).total_seconds())
                escalated.append(
                    await self._transition(
                        conn,
                        None,
                        c,
                        Action.ESCALATE,
                        "escalated",
                        {"waited_seconds": waited},
                        escalated=True,
                    )
                )
        for c in escalated:
            log.info("consultation=%s escalated", c.id)
            await self._notify(c)
        return escalated

    # -- roster ---------------------------------------------------------------------

    async def _hospital_departments(self, conn: AsyncConnection, actor: Actor) -> list[Department]:
        return [
            d
            for d, _ in await store.list_departments(conn)
            if d.institution_id == actor.account.institution_id
        ]

    async def roster(self, actor: Actor) -> list[RosterEntry]:
        """Current and future duty entries of the coordinator's hospital."""
        self._require_role(actor, "coordinator", "specialist")
        async with self.db.read() as conn:
            departments = [d.id for d in await self._hospital_departments(conn, actor)]
            return await store.list_roster(conn, departments, ending_after=self.clock.now())

    async def on_duty(self, department_id: str, at: datetime | None = None) -> list[str]:
        """Ids of specialists on duty for a department at a moment (default now)."""
        at = at or self.clock.now()
        async with self.db.read() as conn:
            entries = await store.list_roster(conn, [department_id], ending_after=at)
        return [e.account_id for e in entries if e.starts_at <= at]

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
        self._require_role(actor, "coordinator")
        if ends_at <= starts_at:
            raise Invalid("a duty must end after it starts", fields=("ends_at",))
        async with self._tx(actor) as conn:
            if department_id not in {d.id for d in await self._hospital_departments(conn, actor)}:
                raise Invalid(
                    "no such department", code="unknown_department", fields=("department_id",)
                )
            specialist = await store.get_account(conn, specialist_id)
            if specialist is None or department_id not in specialist.department_ids:
                raise Invalid(
                    "that specialist does not serve this department",
                    code="unknown_specialist",
                    fields=("specialist_id",),
                )
            rid = await store.add_roster_entry(
                conn,
                department_id=department_id,
                account_id=specialist_id,
                starts_at=starts_at,
                ends_at=ends_at,
                created_by=actor.id,
            )
            await self._audit(
                conn,
                actor,
                "roster.add",
                "roster",
                rid,
                department_id=department_id,
                specialist_id=specialist_id,
            )
            entry = await store.get_roster_entry(conn, rid)
        assert entry is not None  # noqa: S101
        return entry

    async def remove_roster_entry(self, actor: Actor, entry_id: str) -> None:
        """Take an entry off the roster."""
        self._require_role(actor, "coordinator")
        async with self._tx(actor) as conn:
            entry = await store.get_roster_entry(conn, entry_id)
            departments = {d.id for d in await self._hospital_departments(conn, actor)}
            if entry is None or entry.department_id not in departments:
                raise NotFound("roster entry not found")
            await store.delete_roster_entry(conn, entry_id)
            await self._audit(conn, actor, "roster.remove", "roster", entry_id)
