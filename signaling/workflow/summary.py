"""Use cases of the shared record: the structured summary and the FHIR exchange.

A county EMR feeds a patient's summary with a FHIR Bundle (only the patient's
clinic may); the summary is read by whoever may see the patient, and a
consultation exports as a FHIR Bundle for the hospital's record system. Every
read and write is audited, in the transaction that does it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from records import fhir_in, fhir_out, fhir_xml, store, summary
from records.errors import InvalidFhir
from records.models import Patient
from records.store import lookups
from records.summary import Summary, SummaryTable
from records.vocab import ErrorCode, Role
from signaling import jsonlimits
from signaling.errors import Invalid, NotFound
from signaling.workflow import policy
from signaling.workflow.base import Actor, Service, Tx, stored


@dataclass(frozen=True, kw_only=True)
class ImportResult:
    """What an import did: rows added and updated per table, and what it left out
    (invalid resources by path, resources the summary does not use, placeholders)."""

    created: dict[SummaryTable, int]
    updated: dict[SummaryTable, int]
    bundle_type: str = "collection"
    problems: list[fhir_in.Problem] = field(default_factory=list)
    not_used: dict[str, int] = field(default_factory=dict)
    no_information: dict[SummaryTable, list[str]] = field(default_factory=dict)


def visible_patient(tx: Tx, patient_id: str) -> Patient:
    """The patient, if the actor's clinic has them or the actor may see one of their
    consultations; otherwise ``NotFound``, exactly as for an unknown id."""
    # The same statements whether it exists or not (see ``records.store.lookups``).
    patient, consultations = lookups.patient_with_consultations(tx.conn, patient_id)
    if patient is not None:
        account = tx.account
        if account.active and (
            (
                account.role == Role.CLINIC_DOCTOR
                and patient.institution_id == account.institution_id
            )
            or any(policy.can_see(account, c) for c in consultations)
        ):
            return patient
    raise NotFound("patient not found", fields=("patient_id",), probe=("patient", patient_id))


# A FHIR Bundle nests about a dozen levels; the parser recurses once per level.
MAX_BUNDLE_DEPTH = 64


def bundle_json(raw: bytes) -> Any:
    """A Bundle's JSON, refused as ``invalid_json`` naming the problem."""
    try:
        data = jsonlimits.loads(raw, max_depth=MAX_BUNDLE_DEPTH)
    except jsonlimits.TooDeep:
        raise Invalid(
            f"the Bundle nests deeper than {MAX_BUNDLE_DEPTH} levels", code=ErrorCode.INVALID_JSON
        ) from None
    except ValueError:
        raise Invalid("the request body is not valid JSON", code=ErrorCode.INVALID_JSON) from None
    if jsonlimits.bad_keys_or_text(data):
        raise Invalid(
            "the Bundle holds text that is not valid Unicode (a lone surrogate or NUL)",
            code=ErrorCode.INVALID_JSON,
        )
    return data


class SummaryService(Service):
    """Import, read and export a patient's shared record."""

    async def import_bundle(
        self, actor: Actor, patient_id: str, data: bytes | dict[str, Any], *, xml: bool = False
    ) -> ImportResult:
        """Store the summary rows of a FHIR Bundle sent for one of the clinic's patients.

        Rows that came from the same resource before are updated, not duplicated.
        Resources that are invalid or unused are left out and reported; the rest is
        stored. The Bundle's Patient is matched by resident ID number when it
        carries one; otherwise the clinic's choice of patient (the URL) decides.

        Args:
            data: the Bundle as the request's bytes (parsed here, after the access
                check), or already parsed.
            xml: the bytes are FHIR's XML form rather than JSON.

        Raises:
            NotFound: not a patient of the actor's clinic.
            Invalid: ``invalid_json`` (not JSON, nested too deep, or text that is
                not Unicode), ``invalid_fhir`` (not a Bundle about one Patient;
                nothing is stored) or ``patient_mismatch`` (the Bundle's resident
                ID number is someone else's).
        """
        # The patient is checked first, so that a stranger learns nothing from how
        # their Bundle would have been judged, and costs no parsing.
        patient = await self.write(actor, lambda tx: tx.own_patient(patient_id))
        known: list[fhir_in.Problem] = []
        try:
            if isinstance(data, bytes) and xml:
                data, known = await asyncio.to_thread(fhir_xml.bundle_from_xml, data)
            elif isinstance(data, bytes):
                data = bundle_json(data)
            # Validation is CPU work on a body of megabytes: off the event loop.
            parsed = await asyncio.to_thread(fhir_in.parse_bundle, data, known)
        except InvalidFhir as exc:
            raise Invalid(exc.message, code=exc.code, fields=exc.fields) from exc
        # Without a resident ID number (most published Bundles, none Chinese) the
        # clinic's choice of patient stands; with one, it must be this patient's.
        if fhir_in.has_resident_id(parsed) and not fhir_in.names_patient(
            parsed, patient.national_id
        ):
            raise Invalid(
                "the Bundle's Patient is not this patient (resident ID number differs)",
                code=ErrorCode.PATIENT_MISMATCH,
                fields=("Patient.identifier",),
            )
        created: dict[SummaryTable, int] = {}
        updated: dict[SummaryTable, int] = {}

        def work(tx: Tx) -> None:
            tx.own_patient(patient_id)
            for item in parsed.items:
                added = summary.upsert(
                    tx.conn,
                    item.table,
                    patient_id=patient_id,
                    source=item.source,
                    values=item.values,
                    recorded_at=tx.now,
                )
                counts = created if added else updated
                counts[item.table] = counts.get(item.table, 0) + 1
            tx.audit(
                "summary.import",
                "patient",
                patient_id,
                created=dict(created),
                updated=dict(updated),
                left_out=len(parsed.problems),
                not_used=dict(parsed.not_used),
            )

        await self.write(actor, work)
        return ImportResult(
            created=created,
            updated=updated,
            bundle_type=parsed.bundle_type,
            problems=parsed.problems,
            not_used=parsed.not_used,
            no_information=parsed.no_information,
        )

    async def resident_id(self, actor: Actor, patient_id: str) -> str:
        """The resident ID number of one of the actor's clinic's patients (what a
        hospital's FHIR server is searched by); ``NotFound`` for anyone else's."""
        patient = await self.write(actor, lambda tx: tx.own_patient(patient_id))
        return patient.national_id

    async def patient_summary(self, actor: Actor, patient_id: str) -> Summary:
        """A patient's summary, for their clinic and anyone who may see one of their
        consultations."""

        def work(tx: Tx) -> Summary:
            patient = visible_patient(tx, patient_id)
            result = summary.read_summary(tx.conn, patient.id)
            tx.audit("summary.read", "patient", patient.id)
            return result

        return await self.write(actor, work)

    async def consultation_summary(self, actor: Actor, consultation_id: str) -> Summary:
        """The summary of a consultation's patient, for whoever may see the consultation."""

        def work(tx: Tx) -> Summary:
            c = tx.consultation(consultation_id)
            result = summary.read_summary(tx.conn, c.patient_id)
            tx.audit("summary.read", "patient", c.patient_id, consultation_id=c.id)
            return result

        return await self.write(actor, work)

    async def export(
        self, actor: Actor, consultation_id: str, *, base_url: str = "", document: bool = False
    ) -> dict[str, Any]:
        """The consultation as a FHIR R4 Bundle (JSON), for whoever may see it.

        Args:
            base_url: the site's address, under which documents and recordings
                are linked (absolute URLs another system can follow, with a login).
            document: a ``document`` Bundle with a Composition instead of a
                ``collection``.
        """

        def work(tx: Tx) -> fhir_out.ExportData:
            conn = tx.conn
            c = tx.consultation(consultation_id)
            events = store.list_events(conn, c.id)
            opinions = store.list_opinions(conn, c.id)
            documents = summary.consultation_documents(conn, c.id)
            recordings = store.list_recordings(conn, consultation_id=c.id)
            people_ids = {
                c.requested_by,
                *([c.assigned_specialist_id] if c.assigned_specialist_id else []),
                *c.invitee_ids,
                *(e.actor_id for e in events if e.actor_id),
                *(o.author_id for o in opinions),
                *(d.uploaded_by for d in documents),
                *(r.participant_id for r in recordings),
            }
            patient = stored(store.get_patient(conn, c.patient_id))
            account = tx.account
            data = fhir_out.ExportData(
                consultation=c,
                patient=patient,
                department=stored(store.get_department(conn, c.department_id)),
                requesting_institution=stored(
                    store.get_institution(conn, c.requesting_institution_id)
                ),
                consulted_institution=stored(
                    store.get_institution(conn, c.consulted_institution_id)
                ),
                people=store.get_accounts(conn, people_ids),
                consents=store.list_consents(conn, c.patient_id),
                events=events,
                opinions=opinions,
                documents=documents,
                recordings=recordings,
                summary=summary.read_summary(conn, c.patient_id),
                # Only the patient's own clinic sees the whole ID number.
                full_national_id=account.role == Role.CLINIC_DOCTOR
                and account.institution_id == patient.institution_id,
                base_url=base_url.rstrip("/"),
            )
            tx.audit("consultation.export", "consultation", c.id, patient_id=c.patient_id)
            return data

        data = await self.write(actor, work)
        return await asyncio.to_thread(
            fhir_out.build_bundle, data, generated_at=self.clock.now(), document=document
        )
