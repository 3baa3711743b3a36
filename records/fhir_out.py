"""FHIR out: a consultation as a FHIR R4 Bundle for a hospital's record.

A ``collection`` by default, or a ``document``: the same entries behind a
Composition (a consult note, LOINC 11488-4, ``fhir_out_document``) whose
sections list them.

The Bundle holds the request (ServiceRequest), the call (Encounter), the chat
(Communication), the signed opinions (DiagnosticReport, or a ServiceRequest for
a referral) with the exact bytes that were signed, the documents and recordings
(by absolute URL under the site's address, answered only to who may see them, and
SHA-256; not inline), and the patient's side (see
``fhir_out_patient``). Resources refer to each other by stable ``urn:uuid``
full URLs, and every one is validated before the Bundle is returned.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from records.canonical import canonical_json
from records.fhir_common import (
    ADDENDUM_OF_EXTENSION,
    CONSULT_NOTE,
    LOCAL,
    SHA256_EXTENSION,
    account_reference,
    full_url,
    instant,
    reference,
    validate,
)
from records.fhir_out_document import consult_note
from records.fhir_out_patient import consent_resource, patient_resource, summary_resources
from records.models import (
    Account,
    Consent,
    Consultation,
    Department,
    Event,
    Institution,
    Opinion,
    Patient,
    Recording,
)
from records.summary import DocumentRow, Summary


@dataclass(frozen=True, kw_only=True)
class ExportData:
    """Everything a consultation's Bundle is made of (read by the service)."""

    consultation: Consultation
    patient: Patient
    department: Department
    requesting_institution: Institution
    consulted_institution: Institution
    people: dict[str, Account]
    consents: list[Consent]
    events: list[Event]
    opinions: list[Opinion]
    documents: list[DocumentRow]
    recordings: list[Recording]
    summary: Summary
    # Whether the reader is the patient's clinic (who may see the whole ID number).
    full_national_id: bool = False
    # The site's address: documents and recordings are linked by absolute URL
    # under it (the API answers them only to someone who may see them).
    base_url: str = ""


PRIORITY = {"routine": "routine", "urgent": "urgent", "emergency": "stat"}
REQUEST_STATUS = {
    "requested": "active",
    "escalated": "active",
    "accepted": "active",
    "live": "active",
    "ended": "active",
    "signed": "completed",
    "referred": "completed",
    "cancelled": "revoked",
    "declined": "revoked",
}
ENCOUNTER_STATUS = {
    "live": "in-progress",
    "ended": "finished",
    "signed": "finished",
    "referred": "finished",
    "cancelled": "cancelled",
    "declined": "cancelled",
}
KEPT_RECORDINGS = ("finished", "recovered")


def _sha256(hexdigest: str) -> dict[str, Any]:
    return {"url": SHA256_EXTENSION, "valueString": hexdigest}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _inline(data: bytes, content_type: str, title: str) -> dict[str, Any]:
    """An Attachment carrying ``data``; its ``hash`` is the base64 SHA-1 FHIR defines."""
    return {
        "contentType": content_type,
        "data": _b64(data),
        "hash": _b64(hashlib.sha1(data, usedforsecurity=False).digest()),
        "size": len(data),
        "title": title,
    }


OPINION_LABELS = (
    ("findings", "所见 Findings"),
    ("impression", "印象 Impression"),
    ("recommendations", "建议 Recommendations"),
    ("notes", "备注 Notes"),
    ("reason", "转诊理由 Reason"),
    ("department", "转诊科室 Department"),
    ("text", "补充 Addendum"),
)


def opinion_text(body: Mapping[str, Any]) -> str:
    """A signed body as readable text, one labelled paragraph per field."""
    return "\n\n".join(
        f"{label}:\n{body[key]}" for key, label in OPINION_LABELS if body.get(key) is not None
    )


class _Builder:
    """The entries of one export, in the Bundle's order, with the references they share."""

    def __init__(self, data: ExportData) -> None:
        self.d = data
        self.entries: list[dict[str, Any]] = []
        c = data.consultation
        self.patient = reference("Patient", data.patient.id)
        self.request = reference("ServiceRequest", c.id)
        self.encounter = reference("Encounter", c.id)

    def add(self, resource: dict[str, Any], key: str) -> None:
        self.entries.append(
            {"fullUrl": full_url(resource["resourceType"], key), "resource": resource}
        )

    def person(self, account_id: str | None) -> dict[str, Any] | None:
        return account_reference(self.d.people.get(account_id)) if account_id else None

    def build(self) -> list[dict[str, Any]]:
        d = self.d
        self.add(
            patient_resource(
                d.patient, d.requesting_institution, full_national_id=d.full_national_id
            ),
            d.patient.id,
        )
        self.service_request()
        self.encounter_resource()
        for consent in d.consents:
            self.add(consent_resource(consent, self.patient, d.requesting_institution), consent.id)
        for resource in summary_resources(d.summary, self.patient):
            self.add(resource, resource["id"])
        for doc in d.documents:
            self.document(doc)
        for event in d.events:
            if event.kind == "chat" and isinstance(event.data.get("text"), str):
                self.communication(event)
        children = {o.parent_id for o in d.opinions if o.parent_id}
        for opinion in d.opinions:
            if opinion.kind == "referral":
                self.referral(opinion)
            else:
                self.report(opinion, appended=opinion.id in children)
        for rec in d.recordings:
            if rec.status in KEPT_RECORDINGS:
                self.media(rec)
        return self.entries

    def service_request(self) -> None:
        c, dept = self.d.consultation, self.d.department
        notes = [{"text": c.question}]
        if c.decline_reason:
            notes.append({"text": f"declined: {c.decline_reason}"})
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "id": c.id,
            "identifier": [{"system": LOCAL + "consultation", "value": c.id}],
            "status": REQUEST_STATUS.get(c.state, "unknown"),
            "intent": "order",
            "priority": PRIORITY[c.urgency],
            "code": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "448337001",
                        "display": "Telemedicine consultation with patient",
                    }
                ],
                "text": "远程会诊",
            },
            "subject": self.patient,
            "authoredOn": instant(c.created_at),
            "reasonCode": [{"text": c.reason}],
            "note": notes,
            "performerType": {
                "coding": [
                    {"system": LOCAL + "department", "code": dept.code, "display": dept.name}
                ],
                "text": dept.name,
            },
            "performer": [{"display": f"{self.d.consulted_institution.name} {dept.name}"}],
        }
        requester = self.person(c.requested_by)
        if requester:
            resource["requester"] = requester
        self.add(resource, c.id)

    def encounter_resource(self) -> None:
        c = self.d.consultation
        live = next((e.at for e in self.d.events if e.kind == "live"), None)
        ended = next((e.at for e in reversed(self.d.events) if e.kind == "ended"), None)
        resource: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": c.id,
            "status": ENCOUNTER_STATUS.get(c.state, "planned"),
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "VR",
                "display": "virtual",
            },
            "subject": self.patient,
            "basedOn": [self.request],
            "serviceProvider": {"display": self.d.consulted_institution.name},
        }
        ids = [c.requested_by, c.assigned_specialist_id, *sorted(c.invitee_ids)]
        participants = [p for p in (self.person(i) for i in ids) if p]
        if participants:
            resource["participant"] = [{"individual": p} for p in participants]
        if live:
            resource["period"] = {"start": instant(live)}
            if ended:
                resource["period"]["end"] = instant(ended)
        self.add(resource, c.id)

    def document(self, doc: DocumentRow) -> None:
        resource: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "id": doc.id,
            "status": "current",
            "type": {"text": doc.kind},
            "subject": self.patient,
            "date": instant(doc.uploaded_at),
            "description": doc.title,
            "content": [
                {
                    "attachment": {
                        "contentType": doc.media_type,
                        "url": f"{self.d.base_url}/api/documents/{doc.id}/content",
                        "size": doc.size,
                        "title": doc.filename,
                        "creation": instant(doc.uploaded_at),
                        "extension": [_sha256(doc.sha256)],
                    }
                }
            ],
            "context": {"encounter": [self.encounter], "related": [self.request]},
        }
        author = self.person(doc.uploaded_by)
        if author:
            resource["author"] = [author]
        self.add(resource, doc.id)

    def communication(self, event: Event) -> None:
        resource: dict[str, Any] = {
            "resourceType": "Communication",
            "id": f"event-{event.id}",
            "status": "completed",
            "subject": self.patient,
            "encounter": self.encounter,
            "basedOn": [self.request],
            "sent": instant(event.at),
            "payload": [{"contentString": event.data["text"]}],
        }
        sender = self.person(event.actor_id)
        if sender:
            resource["sender"] = sender
        self.add(resource, f"event-{event.id}")

    def _signed_forms(self, opinion: Opinion) -> list[dict[str, Any]]:
        # The readable text, and the exact bytes whose SHA-256 was signed (so that
        # the receiving system can verify the hash).
        signed = _inline(
            canonical_json(opinion.body), "application/json", "signed body (canonical JSON)"
        )
        signed["extension"] = [_sha256(opinion.sha256)]
        text = _inline(opinion_text(opinion.body).encode(), "text/plain; charset=utf-8", "会诊意见")
        text["language"] = "zh-CN"
        return [text, signed]

    def report(self, opinion: Opinion, *, appended: bool) -> None:
        addendum = opinion.kind == "addendum"
        resource: dict[str, Any] = {
            "resourceType": "DiagnosticReport",
            "id": opinion.id,
            "identifier": [{"system": LOCAL + "opinion", "value": opinion.id}],
            "basedOn": [self.request],
            # "appended": later content was added; what was signed is unchanged.
            "status": "appended" if appended else "final",
            "code": {"coding": [CONSULT_NOTE], "text": "补充意见" if addendum else "会诊意见"},
            "subject": self.patient,
            "encounter": self.encounter,
            "effectiveDateTime": instant(opinion.signed_at),
            "issued": instant(opinion.signed_at),
            "conclusion": opinion.body.get("text" if addendum else "impression"),
            "presentedForm": self._signed_forms(opinion),
            "extension": [_sha256(opinion.sha256)],
        }
        author = self.person(opinion.author_id)
        if author:
            resource["performer"] = [author]
        if addendum and opinion.parent_id:
            parent = next((o for o in self.d.opinions if o.id == opinion.parent_id), None)
            kind = "ServiceRequest" if parent and parent.kind == "referral" else "DiagnosticReport"
            resource["extension"].append(
                {"url": ADDENDUM_OF_EXTENSION, "valueReference": reference(kind, opinion.parent_id)}
            )
        self.add(resource, opinion.id)

    def referral(self, opinion: Opinion) -> None:
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "id": opinion.id,
            "identifier": [{"system": LOCAL + "opinion", "value": opinion.id}],
            "extension": [_sha256(opinion.sha256)],
            "basedOn": [self.request],
            "status": "active",
            "intent": "order",
            "code": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "3457005",
                        "display": "Patient referral",
                    }
                ],
                "text": "转诊（线下面诊）",
            },
            "subject": self.patient,
            "encounter": self.encounter,
            "authoredOn": instant(opinion.signed_at),
            "reasonCode": [{"text": opinion.body.get("reason")}],
        }
        if opinion.body.get("department"):
            resource["performerType"] = {"text": opinion.body["department"]}
        author = self.person(opinion.author_id)
        if author:
            resource["requester"] = author
        self.add(resource, opinion.id)

    def media(self, rec: Recording) -> None:
        video = rec.video_codec is not None
        container = "mp4" if rec.container == "mp4" else "webm"
        attachment: dict[str, Any] = {
            "contentType": f"{'video' if video else 'audio'}/{container}",
            "url": f"{self.d.base_url}/api/recordings/{rec.id}/content",
            "title": f"part {rec.part}",
            "creation": instant(rec.started_at),
        }
        if rec.size is not None:
            attachment["size"] = rec.size
        if rec.sha256:
            attachment["extension"] = [_sha256(rec.sha256)]
        resource: dict[str, Any] = {
            "resourceType": "Media",
            "id": rec.id,
            "status": "completed",
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/media-type",
                        "code": "video" if video else "audio",
                    }
                ]
            },
            "subject": self.patient,
            "encounter": self.encounter,
            "basedOn": [self.request],
            "content": attachment,
        }
        period = {"start": instant(rec.started_at)}
        if rec.finished_at:
            period["end"] = instant(rec.finished_at)
        resource["createdPeriod"] = period
        if rec.duration_ms is not None:
            resource["duration"] = rec.duration_ms / 1000
        operator = self.person(rec.participant_id)
        if operator:
            resource["operator"] = operator
        self.add(resource, rec.id)


# Lone surrogates and NUL are not text FHIR (or UTF-8) can carry. The call plane
# refuses them on arrival, but a row stored before that (or by another path) must
# not make the whole export fail for everyone: each becomes U+FFFD.
_NOT_TEXT = re.compile("[\ud800-\udfff\x00]")


def _sendable(value: Any) -> Any:
    """``value`` with every string made of Unicode scalar values (other than NUL)."""
    if isinstance(value, str):
        return _NOT_TEXT.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_sendable(k): _sendable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sendable(v) for v in value]
    return value


def build_bundle(
    data: ExportData, *, generated_at: datetime, document: bool = False
) -> dict[str, Any]:
    """The consultation as a FHIR R4 Bundle, every resource validated.

    Args:
        data: what the service read.
        generated_at: the Bundle's timestamp.
        document: a ``document`` Bundle (a Composition, the consult note, first,
            whose sections list every other entry) instead of a ``collection``.

    Raises:
        ValidationError: a resource we built is not valid FHIR (a bug here).
    """
    entries = [_sendable(entry) for entry in _Builder(data).build()]
    if document:
        composition = _sendable(consult_note(data, entries, generated_at))
        entries.insert(
            0,
            {
                "fullUrl": full_url("Composition", data.consultation.id),
                "resource": composition,
            },
        )
    for entry in entries:
        validate(entry["resource"])
    bundle = {
        "resourceType": "Bundle",
        "id": f"{data.consultation.id}-document" if document else data.consultation.id,
        "identifier": {
            "system": LOCAL + ("consultation-document" if document else "consultation"),
            # A document's identifier names this version of it (bdl-9: system and value).
            "value": f"{data.consultation.id}-{int(generated_at.timestamp())}"
            if document
            else data.consultation.id,
        },
        "type": "document" if document else "collection",
        "timestamp": instant(generated_at),
        "entry": entries,
    }
    validate(bundle)
    return bundle
