"""HL7 FHIR R4 in and out: an EMR's Bundle into the summary, a consultation out as a Bundle.

fhir.resources 8 defaults to R5; this module validates with its ``R4B`` package
(FHIR 4.3.0, the R4-compatible release it ships; there is no plain R4 package).
The elements read and written here are the same in R4 (4.0.1) and R4B.

Both directions are pure functions of plain data: the service reads and writes
the records and checks who may do what.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

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
from records.summary import (
    DocumentRow,
    ObservationRow,
    Summary,
    SummaryTable,
    join_code,
    split_code,
)
from signaling.errors import Invalid
from signaling.workflow.opinion import canonical_json

# The mainland China resident identity number (GB 11643), as the national health
# information standards name it.
RESIDENT_ID_SYSTEM = "urn:oid:2.16.156.10011.1.5"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
ICD10_SYSTEMS = frozenset(
    {
        ICD10_SYSTEM,
        "http://terminology.hl7.org/CodeSystem/icd10",
        # ICD-10 as the national EMR sharing documents (WS/T 500) code diagnoses;
        # county EMRs coding with the national clinical edition send it this way.
        "urn:oid:2.16.156.10011.2.3.3.11",
    }
)
# A category letter and two digits, optionally a dot and an extension
# (the national clinical edition has codes such as J18.900x001).
ICD10_CODE = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Za-z]{1,10})?$")
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CATEGORIES = ("vital-signs", "laboratory")
IMPORTED = ("Patient", "Condition", "MedicationStatement", "AllergyIntolerance", "Observation")
# FHIR requires an offset once a time is given; a bare date (or year-month) is
# read as its first midnight in China Standard Time (UTC+8, no daylight saving),
# the clock of the EMRs that send them.
CHINA = timezone(timedelta(hours=8))

# Identifiers and extensions of our own: a local namespace, not a registered one.
LOCAL = "urn:teleconsult:"
# FHIR's Attachment.hash is a base64 SHA-1 of the data. We keep SHA-256 of files
# (and of signed texts), so that value goes in this extension (lower-case hex)
# rather than pretending to be the SHA-1 that ``hash`` means.
SHA256_EXTENSION = LOCAL + "fhir:sha256"
ADDENDUM_OF_EXTENSION = LOCAL + "fhir:addendum-of"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:teleconsult")


# -- import -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Item:
    """One summary row to store, and the resource it came from."""

    table: SummaryTable
    source: str
    values: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ParsedBundle:
    """What an imported Bundle says: whose it is, and the summary rows."""

    identifiers: list[tuple[str | None, str | None]]
    items: list[Item]


def invalid_fhir(message: str, fields: list[str]) -> Invalid:
    """The one error of a refused Bundle (400 ``invalid_fhir``, the paths in ``fields``)."""
    return Invalid(message, code="invalid_fhir", fields=tuple(dict.fromkeys(fields)))


@dataclass
class _Problems:
    fields: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.fields.append(path)
        self.messages.append(f"{path}: {message}")

    def raise_any(self) -> None:
        if self.fields:
            shown = "; ".join(self.messages[:5])
            more = f" (and {len(self.messages) - 5} more)" if len(self.messages) > 5 else ""
            raise invalid_fhir(f"the Bundle is not valid FHIR R4: {shown}{more}", self.fields)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validate(resource: Mapping[str, Any], path: str, problems: _Problems) -> bool:
    """Validate one resource with fhir.resources; record each fault under ``path``."""
    try:
        get_fhir_model_class(str(resource["resourceType"])).model_validate(resource)
    except ValidationError as exc:
        for err in exc.errors():
            where = _loc(tuple(err["loc"]))
            problems.add(f"{path}.{where}" if where else path, err["msg"])
        return False
    return True


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text_of(concept: Mapping[str, Any]) -> str | None:
    """The human text of a CodeableConcept: its text, else a coding's display or code."""
    if concept.get("text"):
        return str(concept["text"])
    for coding in _list(concept.get("coding")):
        if coding.get("display"):
            return str(coding["display"])
    for coding in _list(concept.get("coding")):
        if coding.get("code"):
            return str(coding["code"])
    return None


def _first_code(concept: Mapping[str, Any], max_len: int = 64) -> str | None:
    for coding in _list(concept.get("coding")):
        if coding.get("code"):
            return join_code(coding.get("system"), str(coding["code"]), max_len)
    return None


def _reference_ok(resource: Mapping[str, Any], key: str, patient_refs: set[str]) -> bool:
    return _dict(resource.get(key)).get("reference") in patient_refs


def parse_datetime(value: str) -> datetime:
    """A FHIR dateTime or instant as an aware datetime (partial dates at their start)."""
    if len(value) == 4:
        value += "-01-01"
    elif len(value) == 7:
        value += "-01"
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=CHINA)


class _Limits:
    """Column sizes: a value that does not fit is refused, never cut short silently."""

    def __init__(self, problems: _Problems, path: str) -> None:
        self.problems = problems
        self.path = path

    def fit(self, value: str | None, max_len: int, where: str) -> str | None:
        if value is not None and len(value) > max_len:
            self.problems.add(f"{self.path}.{where}", f"longer than {max_len} characters")
        return value


def _condition(res: dict[str, Any], lim: _Limits) -> dict[str, Any] | None:
    code = _dict(res.get("code"))
    icd = next(
        (
            c
            for c in _list(code.get("coding"))
            if c.get("system") in ICD10_SYSTEMS and c.get("code")
        ),
        None,
    )
    if icd is None:
        lim.problems.add(
            f"{lim.path}.code.coding", f"a Condition needs an ICD-10 coding ({ICD10_SYSTEM})"
        )
        return None
    icd_code = str(icd["code"]).strip()
    if not ICD10_CODE.match(icd_code):
        lim.problems.add(f"{lim.path}.code.coding", f"{icd_code!r} is not an ICD-10 code")
        return None
    status = _dict(res.get("clinicalStatus"))
    status_code = next((str(c["code"]) for c in _list(status.get("coding")) if c.get("code")), None)
    return {
        "code": icd_code,
        "display": lim.fit(str(icd.get("display") or code.get("text") or icd_code), 300, "code"),
        "clinical_status": lim.fit(status_code, 32, "clinicalStatus"),
        "onset": lim.fit(res.get("onsetDateTime"), 32, "onsetDateTime"),
    }


def _medication(res: dict[str, Any], lim: _Limits) -> dict[str, Any] | None:
    concept = res.get("medicationCodeableConcept")
    if not isinstance(concept, dict) or not _text_of(concept):
        lim.problems.add(
            f"{lim.path}.medicationCodeableConcept",
            "name the medication in medicationCodeableConcept (references are not resolved)",
        )
        return None
    dosage = "; ".join(str(d["text"]) for d in _list(res.get("dosage")) if d.get("text"))
    return {
        "code": _first_code(concept),
        "display": lim.fit(_text_of(concept), 300, "medicationCodeableConcept"),
        "dosage": lim.fit(dosage or None, 500, "dosage"),
        "status": lim.fit(str(res["status"]), 32, "status"),
    }


def _allergy(res: dict[str, Any], lim: _Limits) -> dict[str, Any] | None:
    concept = _dict(res.get("code"))
    if not _text_of(concept):
        lim.problems.add(f"{lim.path}.code", "an AllergyIntolerance needs a code")
        return None
    manifestations = [
        text
        for reaction in _list(res.get("reaction"))
        for m in _list(reaction.get("manifestation"))
        if (text := _text_of(m))
    ]
    return {
        "code": _first_code(concept),
        "display": lim.fit(_text_of(concept), 300, "code"),
        "criticality": lim.fit(res.get("criticality"), 32, "criticality"),
        "reaction": lim.fit("; ".join(manifestations) or None, 300, "reaction"),
    }


def _measurement(part: dict[str, Any], lim: _Limits, where: str) -> dict[str, Any] | None:
    """Code, value, unit and range of an Observation or of one of its components."""
    concept = _dict(part.get("code"))
    code = _first_code(concept)
    if code is None:
        lim.problems.add(f"{lim.path}.{where}code.coding", "an Observation needs a coded code")
        return None
    values: dict[str, Any] = {
        "code": code,
        "display": lim.fit(_text_of(concept), 300, f"{where}code"),
        "value_number": None,
        "value_text": None,
        "unit": None,
    }
    if "valueQuantity" in part:
        quantity = _dict(part["valueQuantity"])
        if quantity.get("value") is None:
            lim.problems.add(f"{lim.path}.{where}valueQuantity.value", "a quantity needs a value")
            return None
        if quantity.get("comparator"):
            # "<0.5" is not the number 0.5: keep it as text, never flag it.
            values["value_text"] = lim.fit(
                f"{quantity['comparator']}{quantity['value']}", 300, f"{where}valueQuantity"
            )
        else:
            values["value_number"] = float(quantity["value"])
        values["unit"] = lim.fit(
            quantity.get("unit") or quantity.get("code"), 32, f"{where}valueQuantity.unit"
        )
    elif "valueString" in part:
        values["value_text"] = lim.fit(str(part["valueString"]), 300, f"{where}valueString")
    elif isinstance(part.get("valueCodeableConcept"), dict) and _text_of(
        part["valueCodeableConcept"]
    ):
        text = _text_of(part["valueCodeableConcept"])
        values["value_text"] = lim.fit(text, 300, f"{where}valueCodeableConcept")
    else:
        lim.problems.add(
            f"{lim.path}.{where}value[x]",
            "give valueQuantity, valueString or valueCodeableConcept",
        )
        return None
    ranges = _list(part.get("referenceRange"))
    low = _dict(ranges[0].get("low")) if ranges else {}
    high = _dict(ranges[0].get("high")) if ranges else {}
    values["ref_low"] = float(low["value"]) if low.get("value") is not None else None
    values["ref_high"] = float(high["value"]) if high.get("value") is not None else None
    if values["unit"] is None:
        values["unit"] = lim.fit(low.get("unit") or high.get("unit"), 32, f"{where}referenceRange")
    return values


def _observations(
    res: dict[str, Any], lim: _Limits, source: str
) -> list[tuple[str, dict[str, Any]]]:
    categories = [
        str(c["code"])
        for concept in _list(res.get("category"))
        for c in _list(concept.get("coding"))
        if c.get("code") in CATEGORIES
    ]
    if not categories:
        lim.problems.add(f"{lim.path}.category", "category must be vital-signs or laboratory")
        return []
    effective = res.get("effectiveDateTime") or res.get("effectiveInstant")
    common = {
        "category": categories[0],
        "effective_at": parse_datetime(str(effective)) if effective else None,
    }
    has_value = any(key.startswith("value") for key in res)
    components = _list(res.get("component"))
    if not has_value and components:
        # A panel such as blood pressure: one summary row per component.
        out = []
        for n, component in enumerate(components):
            values = _measurement(component, lim, f"component[{n}].")
            if values is not None:
                _system, code = split_code(values["code"])
                out.append((f"{source}#{code}", {**common, **values}))
        return out
    values = _measurement(res, lim, "")
    return [(source, {**common, **values})] if values is not None else []


def _source(entry: dict[str, Any], res: dict[str, Any], path: str, problems: _Problems) -> str:
    if res.get("id"):
        return f"{res['resourceType']}/{res['id']}"
    if entry.get("fullUrl"):
        return str(entry["fullUrl"])
    problems.add(f"{path}.id", "a resource needs an id (or a fullUrl) to be imported")
    return ""


def parse_bundle(data: Any) -> ParsedBundle:
    """Validate a Bundle (collection or transaction) and read the summary rows from it.

    Every resource is validated with fhir.resources (R4B), then by the rules of
    the summary: a Condition carries an ICD-10 coding, an Observation is a vital
    sign or a lab result with a value, every resource is about the Bundle's one
    Patient.

    Raises:
        Invalid: ``invalid_fhir``; ``fields`` holds the path of each fault, as
            ``entry[2].resource.code.coding``.
    """
    problems = _Problems()
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise invalid_fhir("send a FHIR Bundle", ["resourceType"])
    if data.get("type") not in ("collection", "transaction"):
        raise invalid_fhir("the Bundle's type must be collection or transaction", ["type"])
    entries = data.get("entry", [])
    if not isinstance(entries, list):
        raise invalid_fhir("entry must be a list", ["entry"])
    shell = {
        **data,
        "entry": [
            {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
            for e in entries
        ],
    }
    _validate(shell, "", problems)
    problems.raise_any()

    resources: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    for n, entry in enumerate(entries):
        res = entry.get("resource")
        if res is None:
            continue  # a transaction entry without a resource (a DELETE) stores nothing
        path = f"entry[{n}].resource"
        if not isinstance(res, dict) or res.get("resourceType") not in IMPORTED:
            problems.add(f"{path}.resourceType", "must be one of " + ", ".join(IMPORTED))
            continue
        if _validate(res, path, problems):
            resources.append((n, entry, res))
    problems.raise_any()

    patients = [(n, e, r) for n, e, r in resources if r["resourceType"] == "Patient"]
    if len(patients) != 1:
        raise invalid_fhir("the Bundle must contain exactly one Patient", ["entry"])
    _n, patient_entry, patient = patients[0]
    patient_refs = {f"Patient/{patient['id']}"} if patient.get("id") else set()
    if patient_entry.get("fullUrl"):
        patient_refs.add(str(patient_entry["fullUrl"]))
    identifiers = [(i.get("system"), i.get("value")) for i in _list(patient.get("identifier"))]

    items: list[Item] = []
    seen: set[str] = set()
    for n, entry, res in resources:
        kind = res["resourceType"]
        if kind == "Patient":
            continue
        path = f"entry[{n}].resource"
        lim = _Limits(problems, path)
        source = _source(entry, res, path, problems)
        if source in seen:
            problems.add(f"{path}.id", f"{source} appears twice")
        seen.add(source)
        subject = "patient" if kind == "AllergyIntolerance" else "subject"
        if not _reference_ok(res, subject, patient_refs):
            problems.add(f"{path}.{subject}", "must refer to the Bundle's Patient")
            continue
        if kind == "Condition":
            values = _condition(res, lim)
            if values is not None:
                items.append(Item(table="conditions", source=source, values=values))
        elif kind == "MedicationStatement":
            values = _medication(res, lim)
            if values is not None:
                items.append(Item(table="medications", source=source, values=values))
        elif kind == "AllergyIntolerance":
            values = _allergy(res, lim)
            if values is not None:
                items.append(Item(table="allergies", source=source, values=values))
        else:
            for src, values in _observations(res, lim, source):
                items.append(Item(table="observations", source=src, values=values))
    for item in items:
        if len(item.source) > 200:
            problems.add("entry", f"the id {item.source[:40]}… is longer than 200 characters")
    problems.raise_any()
    return ParsedBundle(identifiers=identifiers, items=items)


def names_patient(parsed: ParsedBundle, national_id: str) -> bool:
    """Whether the Bundle's Patient carries this resident ID number."""
    return any(
        system == RESIDENT_ID_SYSTEM
        and isinstance(value, str)
        and value.strip().upper() == national_id
        for system, value in parsed.identifiers
    )


def has_resident_id(parsed: ParsedBundle) -> bool:
    """Whether the Bundle's Patient carries a resident ID number at all."""
    return any(system == RESIDENT_ID_SYSTEM and value for system, value in parsed.identifiers)


# -- export -------------------------------------------------------------------------


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
CONSULT_NOTE = {"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}
KEPT_RECORDINGS = ("finished", "recovered")


def full_url(resource_type: str, key: str) -> str:
    """A stable ``urn:uuid`` for a resource of the export (references use it)."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}/{key}')}"


def _ref(resource_type: str, key: str, display: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"reference": full_url(resource_type, key)}
    if display:
        ref["display"] = display
    return ref


def _instant(value: datetime) -> str:
    return value.isoformat()


def _person(account: Account | None) -> dict[str, Any] | None:
    if account is None:
        return None
    return {
        "display": f"{account.display_name} {account.title}"
        if account.title
        else account.display_name,
        "identifier": {"system": LOCAL + "account", "value": account.id},
    }


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
    def __init__(self, data: ExportData) -> None:
        self.d = data
        self.entries: list[dict[str, Any]] = []
        c = data.consultation
        self.patient = _ref("Patient", data.patient.id)
        self.request = _ref("ServiceRequest", c.id)
        self.encounter = _ref("Encounter", c.id)

    def add(self, resource: dict[str, Any], key: str) -> None:
        self.entries.append(
            {"fullUrl": full_url(resource["resourceType"], key), "resource": resource}
        )

    def person(self, account_id: str | None) -> dict[str, Any] | None:
        return _person(self.d.people.get(account_id)) if account_id else None

    def build(self) -> list[dict[str, Any]]:
        self.patient_resource()
        self.service_request()
        self.encounter_resource()
        for consent in self.d.consents:
            self.consent(consent)
        self.summary()
        for doc in self.d.documents:
            self.document(doc)
        for event in self.d.events:
            if event.kind == "chat" and isinstance(event.data.get("text"), str):
                self.communication(event)
        children = {o.parent_id for o in self.d.opinions if o.parent_id}
        for opinion in self.d.opinions:
            if opinion.kind == "referral":
                self.referral(opinion)
            else:
                self.report(opinion, appended=opinion.id in children)
        for rec in self.d.recordings:
            if rec.status in KEPT_RECORDINGS:
                self.media(rec)
        return self.entries

    def patient_resource(self) -> None:
        p = self.d.patient
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "id": p.id,
            # The real number: the export goes to a hospital's record system, and
            # only people who may see this patient can ask for it.
            "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": p.national_id}],
            "name": [{"text": p.name}],
            "gender": p.sex,
            "birthDate": p.birth_date.isoformat(),
            "managingOrganization": {"display": self.d.requesting_institution.name},
        }
        if p.phone:
            resource["telecom"] = [{"system": "phone", "value": p.phone}]
        self.add(resource, p.id)

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
            "authoredOn": _instant(c.created_at),
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
            resource["period"] = {"start": _instant(live)}
            if ended:
                resource["period"]["end"] = _instant(ended)
        self.add(resource, c.id)

    def consent(self, consent: Consent) -> None:
        period = {"start": _instant(consent.given_at)}
        if consent.withdrawn_at:
            period["end"] = _instant(consent.withdrawn_at)
        resource = {
            "resourceType": "Consent",
            "id": consent.id,
            "status": "inactive" if consent.withdrawn_at else "active",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "treatment",
                        "display": "Treatment",
                    }
                ]
            },
            "category": [
                {
                    "coding": [
                        {"system": "http://loinc.org", "code": "59284-0", "display": "Consent"}
                    ],
                    "text": "远程会诊知情同意",
                }
            ],
            "patient": self.patient,
            "dateTime": _instant(consent.given_at),
            "performer": [{"display": f"{consent.given_by} ({consent.relationship})"}],
            "organization": [{"display": self.d.requesting_institution.name}],
            "policyRule": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
                ]
            },
            "provision": {
                "type": "permit",
                "period": period,
                # Recording the call is a separate choice of the patient.
                "provision": [
                    {
                        "type": "permit" if consent.scope_recording else "deny",
                        "action": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                        "code": "collect",
                                    }
                                ],
                                "text": "音视频录制 audio/video recording of the consultation",
                            }
                        ],
                    }
                ],
            },
        }
        self.add(resource, consent.id)

    def summary(self) -> None:
        s = self.d.summary
        for cond in s.conditions:
            resource: dict[str, Any] = {
                "resourceType": "Condition",
                "id": cond.id,
                "code": {
                    "coding": [
                        {"system": ICD10_SYSTEM, "code": cond.code, "display": cond.display}
                    ],
                    "text": cond.display,
                },
                "subject": self.patient,
                "recordedDate": _instant(cond.recorded_at),
            }
            if cond.clinical_status:
                resource["clinicalStatus"] = {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": cond.clinical_status,
                        }
                    ]
                }
            if cond.onset:
                resource["onsetDateTime"] = cond.onset
            self.add(resource, cond.id)
        for med in s.medications:
            resource = {
                "resourceType": "MedicationStatement",
                "id": med.id,
                "status": med.status,
                "medicationCodeableConcept": _concept(med.code, med.display),
                "subject": self.patient,
                "dateAsserted": _instant(med.recorded_at),
            }
            if med.dosage:
                resource["dosage"] = [{"text": med.dosage}]
            self.add(resource, med.id)
        for allergy in s.allergies:
            resource = {
                "resourceType": "AllergyIntolerance",
                "id": allergy.id,
                "code": _concept(allergy.code, allergy.display),
                "patient": self.patient,
                "recordedDate": _instant(allergy.recorded_at),
            }
            if allergy.criticality:
                resource["criticality"] = allergy.criticality
            if allergy.reaction:
                resource["reaction"] = [{"manifestation": [{"text": allergy.reaction}]}]
            self.add(resource, allergy.id)
        for obs in s.observations:
            self.observation(obs)

    def observation(self, obs: ObservationRow) -> None:
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": obs.id,
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": obs.category}]}],
            "code": _concept(obs.code, obs.display),
            "subject": self.patient,
        }
        if obs.effective_at:
            resource["effectiveDateTime"] = _instant(obs.effective_at)
        if obs.value_number is not None:
            quantity: dict[str, Any] = {"value": obs.value_number}
            if obs.unit:
                quantity["unit"] = obs.unit
            resource["valueQuantity"] = quantity
        elif obs.value_text:
            resource["valueString"] = obs.value_text
        else:
            resource["dataAbsentReason"] = {"text": "no value"}
        bounds: dict[str, Any] = {}
        for key, value in (("low", obs.ref_low), ("high", obs.ref_high)):
            if value is not None:
                bounds[key] = {"value": value, **({"unit": obs.unit} if obs.unit else {})}
        if bounds:
            resource["referenceRange"] = [bounds]
        if obs.flag:
            resource["interpretation"] = [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                            "code": obs.flag,
                            "display": "Low" if obs.flag == "L" else "High",
                        }
                    ]
                }
            ]
        self.add(resource, obs.id)

    def document(self, doc: DocumentRow) -> None:
        resource: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "id": doc.id,
            "status": "current",
            "type": {"text": doc.kind},
            "subject": self.patient,
            "date": _instant(doc.uploaded_at),
            "description": doc.title,
            "content": [
                {
                    "attachment": {
                        "contentType": doc.media_type,
                        "url": f"/api/documents/{doc.id}/content",
                        "size": doc.size,
                        "title": doc.filename,
                        "creation": _instant(doc.uploaded_at),
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
            "sent": _instant(event.at),
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
            "effectiveDateTime": _instant(opinion.signed_at),
            "issued": _instant(opinion.signed_at),
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
                {"url": ADDENDUM_OF_EXTENSION, "valueReference": _ref(kind, opinion.parent_id)}
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
            "authoredOn": _instant(opinion.signed_at),
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
            "url": f"/api/recordings/{rec.id}/content",
            "title": f"part {rec.part}",
            "creation": _instant(rec.started_at),
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
        period = {"start": _instant(rec.started_at)}
        if rec.finished_at:
            period["end"] = _instant(rec.finished_at)
        resource["createdPeriod"] = period
        if rec.duration_ms is not None:
            resource["duration"] = rec.duration_ms / 1000
        operator = self.person(rec.participant_id)
        if operator:
            resource["operator"] = operator
        self.add(resource, rec.id)


def _concept(stored_code: str | None, display: str) -> dict[str, Any]:
    system, code = split_code(stored_code)
    concept: dict[str, Any] = {"text": display}
    if code:
        coding: dict[str, Any] = {"code": code, "display": display}
        if system:
            coding["system"] = system
        concept["coding"] = [coding]
    return concept


def build_bundle(data: ExportData, *, generated_at: datetime) -> dict[str, Any]:
    """The consultation as a FHIR R4 ``collection`` Bundle, every resource validated.

    Args:
        data: what the service read.
        generated_at: the Bundle's timestamp.

    Raises:
        ValidationError: a resource we built is not valid FHIR (a bug here).
    """
    entries = _Builder(data).build()
    for entry in entries:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    bundle = {
        "resourceType": "Bundle",
        "id": data.consultation.id,
        "identifier": {"system": LOCAL + "consultation", "value": data.consultation.id},
        "type": "collection",
        "timestamp": _instant(generated_at),
        "entry": entries,
    }
    get_fhir_model_class("Bundle").model_validate(bundle)
    return bundle
