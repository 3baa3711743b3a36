"""Use cases of the shared record: the structured summary and the FHIR exchange.

A county EMR feeds a patient's summary with a FHIR Bundle (only the patient's
clinic may); the summary is read by whoever may see the patient, and a
consultation exports as a FHIR Bundle for the hospital's record system. Every
read and write is audited, in the transaction that does it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from records import fhir_in, fhir_out, store, summary
from records.errors import InvalidFhir
from records.fhir_common import RESIDENT_ID_SYSTEM
from records.models import Patient
from records.summary import Summary, SummaryTable
from signaling import policy
from signaling.access import Actor
from signaling.errors import Invalid, NotFound
from signaling.service import ConsultationService


@dataclass(frozen=True, kw_only=True)
class ImportResult:
    """How many summary rows an import added and updated, per table."""

    created: dict[SummaryTable, int]
    updated: dict[SummaryTable, int]


class SummaryService:
    """Import, read and export a patient's shared record."""

    def __init__(self, *, consultations: ConsultationService) -> None:
        """Wire the service.

        Args:
            consultations: the workflow service, whose transaction, visibility
                and audit helpers these use cases share (one rule in one place).
        """
        self.consultations = consultations
        self.clock = consultations.clock

    async def _patient_visible(
        self, conn: AsyncConnection, actor: Actor, patient_id: str
    ) -> Patient:
        """The patient, if the actor's clinic has them or the actor may see one of
        their consultations; otherwise NotFound, exactly as for an unknown id."""
        patient = await store.get_patient(conn, patient_id)
        if patient is not None:
            account = actor.account
            if account.active and (
                (
                    account.role == "clinic_doctor"
                    and patient.institution_id == account.institution_id
                )
                or any(
                    policy.can_see(account, c)
                    for c in await summary.patient_consultations(conn, patient_id)
                )
            ):
                return patient
        raise NotFound("patient not found", fields=("patient_id",), probe=("patient", patient_id))

    async def import_bundle(self, actor: Actor, patient_id: str, data: Any) -> ImportResult:
        """Store the summary rows of a FHIR Bundle sent for one of the clinic's patients.

        Rows that came from the same resource before are updated, not duplicated.

        Raises:
            NotFound: not a patient of the actor's clinic.
            Invalid: ``invalid_fhir`` (nothing is stored) or ``patient_mismatch``
                (the Bundle is about someone else).
        """
        cs = self.consultations
        async with cs._tx(actor) as conn:
            # The patient is checked first, so that a stranger learns nothing from
            # how their Bundle would have been judged.
            patient = await cs._own_patient(conn, actor, patient_id)
        # Validation is CPU work on a body of up to a megabyte: off the event loop.
        try:
            parsed = await asyncio.to_thread(fhir_in.parse_bundle, data)
        except InvalidFhir as exc:
            raise Invalid(exc.message, code=exc.code, fields=exc.fields) from exc
        if not fhir_in.has_resident_id(parsed):
            raise Invalid(
                f"the Patient needs an identifier with system {RESIDENT_ID_SYSTEM}",
                code=InvalidFhir.code,
                fields=("Patient.identifier",),
            )
        if not fhir_in.names_patient(parsed, patient.national_id):
            raise Invalid(
                "the Bundle's Patient is not this patient (resident ID number differs)",
                code="patient_mismatch",
                fields=("Patient.identifier",),
            )
        created: dict[SummaryTable, int] = {}
        updated: dict[SummaryTable, int] = {}
        async with cs._tx(actor) as conn:
            await cs._own_patient(conn, actor, patient_id)
            now = self.clock.now()
            for item in parsed.items:
                added = await summary.upsert(
                    conn,
                    item.table,
                    patient_id=patient_id,
                    source=item.source,
                    values=item.values,
                    recorded_at=now,
                )
                counts = created if added else updated
                counts[item.table] = counts.get(item.table, 0) + 1
            await cs._audit(
                conn,
                actor,
                "summary.import",
                "patient",
                patient_id,
                created=dict(created),
                updated=dict(updated),
            )
        return ImportResult(created=created, updated=updated)

    async def patient_summary(self, actor: Actor, patient_id: str) -> Summary:
        """A patient's summary, for their clinic and anyone who may see one of their
        consultations."""
        async with self.consultations._tx(actor) as conn:
            patient = await self._patient_visible(conn, actor, patient_id)
            result = await summary.read_summary(conn, patient.id)
            await self.consultations._audit(conn, actor, "summary.read", "patient", patient.id)
        return result

    async def consultation_summary(self, actor: Actor, consultation_id: str) -> Summary:
        """The summary of a consultation's patient, for whoever may see the consultation."""
        cs = self.consultations
        async with cs._tx(actor) as conn:
            c = await cs._visible(conn, actor, consultation_id)
            result = await summary.read_summary(conn, c.patient_id)
            await cs._audit(
                conn, actor, "summary.read", "patient", c.patient_id, consultation_id=c.id
            )
        return result

    async def export(self, actor: Actor, consultation_id: str) -> dict[str, Any]:
        """The consultation as a FHIR R4 Bundle (JSON), for whoever may see it."""
        cs = self.consultations
        async with cs._tx(actor) as conn:
            c = await cs._visible(conn, actor, consultation_id)
            patient = await store.get_patient(conn, c.patient_id)
            department = await store.get_department(conn, c.department_id)
            requesting = await store.get_institution(conn, c.requesting_institution_id)
            consulted = await store.get_institution(conn, c.consulted_institution_id)
            assert patient and department and requesting and consulted  # noqa: S101 - FKs
            events = await store.list_events(conn, c.id)
            opinions = await store.list_opinions(conn, c.id)
            documents = await summary.consultation_documents(conn, c.id)
            recordings = await store.list_recordings(conn, consultation_id=c.id)
            people_ids = {
                c.requested_by,
                *([c.assigned_specialist_id] if c.assigned_specialist_id else []),
                *c.invitee_ids,
                *(e.actor_id for e in events if e.actor_id),
                *(o.author_id for o in opinions),
                *(d.uploaded_by for d in documents),
                *(r.participant_id for r in recordings),
            }
            data = fhir_out.ExportData(
                consultation=c,
                patient=patient,
                department=department,
                requesting_institution=requesting,
                consulted_institution=consulted,
                people=await store.get_accounts(conn, people_ids),
                consents=await store.list_consents(conn, c.patient_id),
                events=events,
                opinions=opinions,
                documents=documents,
                recordings=recordings,
                summary=await summary.read_summary(conn, c.patient_id),
            )
            await cs._audit(
                conn, actor, "consultation.export", "consultation", c.id, patient_id=c.patient_id
            )
        return await asyncio.to_thread(fhir_out.build_bundle, data, generated_at=self.clock.now())
