"""Patients and their informed consent, kept by the clinic that registered them."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from records import store
from records.models import Consent, Patient
from records.vocab import ErrorCode, Role
from signaling.errors import IllegalTransition, Invalid, NotFound
from signaling.workflow.base import Actor, Service, Tx, stored


class PatientService(Service):
    """Register patients, list them, and record or withdraw their consent."""

    async def register(
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
        self.require_role(actor, Role.CLINIC_DOCTOR)

        def work(tx: Tx) -> Patient:
            pid = store.add_patient(
                tx.conn,
                institution_id=tx.account.institution_id,
                name=name,
                sex=sex,
                birth_date=birth_date,
                national_id=national_id,
                phone=phone,
                created_by=tx.account.id,
                created_at=tx.now,
            )
            tx.audit("patient.create", "patient", pid)
            return stored(store.get_patient(tx.conn, pid))

        return await self.write(actor, work)

    async def list_patients(self, actor: Actor) -> list[Patient]:
        """The clinic's patients."""
        self.require_role(actor, Role.CLINIC_DOCTOR)

        def work(tx: Tx) -> list[Patient]:
            patients = store.list_patients(tx.conn, tx.account.institution_id)
            tx.audit("patient.list", "patient", None, count=len(patients))
            return patients

        return await self.write(actor, work)

    async def get(self, actor: Actor, patient_id: str) -> tuple[Patient, list[Consent]]:
        """A patient of the clinic with their consents."""

        def work(tx: Tx) -> tuple[Patient, list[Consent]]:
            patient = tx.own_patient(patient_id)
            consents = store.list_consents(tx.conn, patient_id)
            tx.audit("patient.read", "patient", patient_id)
            return patient, consents

        return await self.write(actor, work)

    async def active_consents(self, actor: Actor, patient_ids: list[str]) -> dict[str, Consent]:
        """The current consultation consent of each of the clinic's patients that has one.

        For a list the actor has just been allowed to see (the listing is the
        audited read); ids of other clinics' patients are left out.
        """

        def work(conn: sa.Connection) -> dict[str, Consent]:
            out = {}
            mine = {p.id for p in store.list_patients(conn, actor.account.institution_id)}
            for pid in patient_ids:
                consent = store.active_consent(conn, pid) if pid in mine else None
                if consent is not None:
                    out[pid] = consent
            return out

        return await self.read(work)

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

        def work(tx: Tx) -> Consent:
            tx.own_patient(patient_id)
            cid = store.add_consent(
                tx.conn,
                patient_id=patient_id,
                scope_consultation=scope_consultation,
                scope_recording=scope_recording,
                given_by=given_by,
                relationship=relationship,
                taken_by=tx.account.id,
                given_at=tx.now,
            )
            tx.audit(
                "consent.create", "consent", cid, patient_id=patient_id, recording=scope_recording
            )
            return stored(store.get_consent(tx.conn, cid))

        return await self.write(actor, work)

    async def withdraw_consent(self, actor: Actor, patient_id: str, consent_id: str) -> Consent:
        """Withdraw a consent; live sessions are not cut, but no new one may start."""

        def work(tx: Tx) -> Consent:
            tx.own_patient(patient_id)
            consent = store.get_consent(tx.conn, consent_id)
            if consent is None or consent.patient_id != patient_id:
                raise NotFound(
                    "consent not found", fields=("consent_id",), probe=("consent", consent_id)
                )
            if not store.withdraw_consent(tx.conn, consent_id, at=tx.now, by=tx.account.id):
                raise IllegalTransition(
                    "consent already withdrawn", code=ErrorCode.ALREADY_WITHDRAWN
                )
            tx.audit("consent.withdraw", "consent", consent_id)
            return stored(store.get_consent(tx.conn, consent_id))

        return await self.write(actor, work)
