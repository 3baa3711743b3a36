"""FHIR in: a Bundle as hospitals publish it, read into a patient's structured summary.

Any Bundle type is read (collection, transaction, batch, document, searchset, ...)
as long as it is about one Patient. The summary uses Conditions (ICD-10, ICD-11,
SNOMED CT or any other coding; the ICD-10 code when there is one),
MedicationStatements and MedicationRequests (a ``medicationReference`` resolved
to the Medication in the Bundle or contained in the resource),
AllergyIntolerances, Immunizations, Procedures, Observations of every category,
and DiagnosticReports through their results. Every other resource (Encounter,
Claim, CarePlan, Composition, ...) is kept aside and counted, never a reason to
refuse.

Each resource is validated on its own (see ``fhir_common`` for the R4B package);
one that is invalid, or that the summary cannot read, is reported by its path and
left out, and the valid rest is stored. Statuses are kept as given: whether a row
is shown as a fact is decided when it is read (``records.summary``). "No
information" placeholders (the IPS absent/unknown codes) are reported, not stored
as entries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from records.errors import InvalidFhir
from records.fhir_common import ICD10_SYSTEM, RESIDENT_ID_SYSTEM, validate
from records.summary import SummaryTable, join_code, split_code

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
ICD11_SYSTEM = "http://id.who.int/icd/release/11/mms"
SNOMED_SYSTEM = "http://snomed.info/sct"
# The International Patient Summary's codes for "no information" and "none known".
ABSENT_UNKNOWN_SYSTEM = "http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips"
# SNOMED CT situations that say "none known" rather than name an entry (the IPS
# examples send "No known food allergy" as an AllergyIntolerance).
NONE_KNOWN_SNOMED = frozenset(
    {
        "716186003",  # No known allergy
        "409137002",  # No known drug allergy
        "429625007",  # No known food allergy
        "428607008",  # No known environmental allergy
        "428197003",  # No known insect allergy
        "160244002",  # No known allergies
        "160245001",  # No current problems or disability
        "787481004",  # Medication not known
        "182849000",  # No drug therapy prescribed
    }
)
READ = (
    "Patient",
    "Condition",
    "MedicationStatement",
    "MedicationRequest",
    "AllergyIntolerance",
    "Observation",
    "DiagnosticReport",
    "Medication",
    "Immunization",
    "Procedure",
)
# A DiagnosticReport withdrawn this way withdraws its results with it.
WITHDRAWN_REPORT = frozenset({"entered-in-error", "cancelled"})
# FHIR requires an offset once a time is given; a bare date (or year-month) is
# read as its first midnight in China Standard Time (UTC+8, no daylight saving),
# the clock of the EMRs that send them.
CHINA = timezone(timedelta(hours=8))


@dataclass(frozen=True, kw_only=True)
class Item:
    """One summary row to store, and the resource it came from."""

    table: SummaryTable
    source: str
    values: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Problem:
    """A resource left out of the import, by its path in the Bundle, and why."""

    path: str
    message: str


@dataclass(frozen=True, kw_only=True)
class ParsedBundle:
    """What an imported Bundle says: whose it is, the summary rows, and what was left
    out (invalid resources by path, unused ones counted by type, placeholders)."""

    bundle_type: str
    identifiers: list[tuple[str | None, str | None]]
    items: list[Item]
    problems: list[Problem] = field(default_factory=list)
    not_used: dict[str, int] = field(default_factory=dict)
    no_information: dict[SummaryTable, list[str]] = field(default_factory=dict)


@dataclass
class _Problems:
    fields: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.fields.append(path)
        self.messages.append(f"{path}: {message}")

    def listed(self) -> list[Problem]:
        return [
            Problem(path=f, message=m.removeprefix(f"{f}: "))
            for f, m in zip(self.fields, self.messages, strict=True)
        ]

    def raise_any(self) -> None:
        if self.fields:
            shown = "; ".join(self.messages[:5])
            more = f" (and {len(self.messages) - 5} more)" if len(self.messages) > 5 else ""
            raise InvalidFhir(f"the Bundle is not valid FHIR R4: {shown}{more}", self.fields)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validate(resource: Mapping[str, Any], path: str, problems: _Problems) -> bool:
    """Validate one resource with fhir.resources; record each fault under ``path``."""
    try:
        validate(resource)
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


def _placeholder(concept: Mapping[str, Any]) -> bool:
    """Whether a code says "no information" / "none known" rather than naming an entry."""
    return any(
        c.get("system") == ABSENT_UNKNOWN_SYSTEM
        or (c.get("system") == SNOMED_SYSTEM and c.get("code") in NONE_KNOWN_SNOMED)
        for c in _list(concept.get("coding"))
    )


def _status_code(concept: Any) -> str | None:
    return next(
        (str(c["code"]) for c in _list(_dict(concept).get("coding")) if c.get("code")), None
    )


def _condition(res: dict[str, Any], lim: _Limits) -> dict[str, Any] | None:
    code = _dict(res.get("code"))
    codings = [c for c in _list(code.get("coding")) if c.get("code")]
    icd = next((c for c in codings if c.get("system") in ICD10_SYSTEMS), None)
    if icd is not None and ICD10_CODE.match(str(icd["code"]).strip()):
        # ICD-10 stays a bare code, as the summary has always kept it.
        stored: str | None = str(icd["code"]).strip()
        chosen: dict[str, Any] | None = icd
    else:
        # Otherwise ICD-11, then SNOMED CT, then whatever coding there is, as
        # ``system|code`` (a code without a system would read as ICD-10).
        chosen = next(
            (
                c
                for system in (ICD11_SYSTEM, SNOMED_SYSTEM)
                for c in codings
                if c.get("system") == system
            ),
            next((c for c in codings if c.get("system")), None),
        )
        stored = (
            join_code(str(chosen["system"]), str(chosen["code"]).strip(), 64) if chosen else None
        )
        if stored is not None and "|" not in stored:
            lim.problems.add(f"{lim.path}.code.coding", "the code and its system are too long")
            return None
    text = (chosen or {}).get("display") or _text_of(code)
    if stored is None and not text:
        lim.problems.add(f"{lim.path}.code", "a Condition needs a code or a text")
        return None
    return {
        "code": stored or "",
        "display": lim.fit(str(text or stored), 300, "code"),
        "clinical_status": lim.fit(_status_code(res.get("clinicalStatus")), 32, "clinicalStatus"),
        "verification_status": lim.fit(
            _status_code(res.get("verificationStatus")), 32, "verificationStatus"
        ),
        "onset": lim.fit(res.get("onsetDateTime"), 32, "onsetDateTime"),
    }


def _medication(
    res: dict[str, Any], lim: _Limits, medications: Mapping[str, dict[str, Any]]
) -> dict[str, Any] | None:
    concept = res.get("medicationCodeableConcept")
    where = "medicationCodeableConcept"
    if concept is None and isinstance(res.get("medicationReference"), dict):
        where = "medicationReference"
        ref = str(res["medicationReference"].get("reference") or "")
        contained = {
            f"#{c.get('id')}": c
            for c in _list(res.get("contained"))
            if c.get("resourceType") == "Medication"
        }
        medication = contained.get(ref) or medications.get(ref)
        if medication is not None:
            concept = medication.get("code")
        elif res["medicationReference"].get("display"):
            concept = {"text": res["medicationReference"]["display"]}
        else:
            lim.problems.add(
                f"{lim.path}.medicationReference", "refers to a Medication not in the Bundle"
            )
            return None
    if not isinstance(concept, dict) or not _text_of(concept):
        lim.problems.add(f"{lim.path}.{where}", "the medication has no code or name")
        return None
    dosages = _list(res.get("dosage")) or _list(res.get("dosageInstruction"))
    dosage = "; ".join(str(d["text"]) for d in dosages if d.get("text"))
    return {
        "code": _first_code(concept),
        "display": lim.fit(_text_of(concept), 300, where),
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
        "clinical_status": lim.fit(_status_code(res.get("clinicalStatus")), 32, "clinicalStatus"),
        "verification_status": lim.fit(
            _status_code(res.get("verificationStatus")), 32, "verificationStatus"
        ),
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
    elif isinstance(part.get("valueBoolean"), bool):
        values["value_text"] = "true" if part["valueBoolean"] else "false"
    elif isinstance(part.get("valueInteger"), int):
        values["value_number"] = float(part["valueInteger"])
    else:
        lim.problems.add(
            f"{lim.path}.{where}value[x]",
            "give valueQuantity, valueString, valueCodeableConcept, valueBoolean or valueInteger",
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


def _event(
    res: dict[str, Any], lim: _Limits, concept_key: str, when_key: str, column: str
) -> dict[str, Any] | None:
    """An Immunization (vaccineCode, occurrence) or Procedure (code, performed)."""
    concept = _dict(res.get(concept_key))
    if not _text_of(concept):
        lim.problems.add(f"{lim.path}.{concept_key}", "needs a code or a text")
        return None
    when = (
        res.get(f"{when_key}DateTime")
        or res.get(f"{when_key}String")
        or _dict(res.get(f"{when_key}Period")).get("start")
    )
    return {
        "code": _first_code(concept),
        "display": lim.fit(_text_of(concept), 300, concept_key),
        "status": lim.fit(str(res["status"]), 32, "status"),
        column: lim.fit(str(when) if when else None, 32, when_key),
    }


def _category(res: Mapping[str, Any]) -> str:
    codes = [
        str(c["code"])
        for concept in _list(res.get("category"))
        for c in _list(concept.get("coding"))
        if c.get("code")
    ]
    for preferred in ("vital-signs", "laboratory"):
        if preferred in codes:
            return preferred
    return codes[0][:32] if codes else "other"


def _observations(
    res: dict[str, Any], lim: _Limits, source: str, status: str
) -> list[tuple[str, dict[str, Any]]]:
    effective = (
        res.get("effectiveDateTime")
        or res.get("effectiveInstant")
        or _dict(res.get("effectivePeriod")).get("start")
        or res.get("issued")
    )
    common = {
        "category": _category(res),
        "status": lim.fit(status, 32, "status"),
        "effective_at": parse_datetime(str(effective)) if effective else None,
    }
    has_value = any(key.startswith("value") for key in res)
    components = _list(res.get("component"))
    if not has_value and not components and _list(res.get("hasMember")):
        # A grouping (a panel such as "Blood typing"): its members are the results.
        return []
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


def _source(entry: dict[str, Any], res: dict[str, Any]) -> str | None:
    if res.get("id"):
        return f"{res['resourceType']}/{res['id']}"
    if entry.get("fullUrl"):
        return str(entry["fullUrl"])
    return None


def _keys(entry: Mapping[str, Any], res: Mapping[str, Any]) -> set[str]:
    """The references by which other resources of the Bundle may point at this one."""
    keys = set()
    if res.get("id"):
        keys.add(f"{res['resourceType']}/{res['id']}")
    if entry.get("fullUrl"):
        url = str(entry["fullUrl"])
        keys.add(url)
        # An absolute URL is also reached by its relative tail, ``Type/id``.
        parts = url.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == res.get("resourceType"):
            keys.add("/".join(parts[-2:]))
    return keys


def parse_bundle(data: Any, known_problems: Sequence[Problem] = ()) -> ParsedBundle:
    """Read a Bundle of any type into summary rows, leaving out what cannot be read.

    Every resource the summary reads is validated with fhir.resources (R4B) and by
    the rules of the summary (coded, valued, about the Bundle's one Patient). A
    resource that fails is reported by path in ``problems`` and left out; resources
    the summary does not read are counted in ``not_used``.

    Raises:
        InvalidFhir: only when nothing can be read: not a Bundle, a malformed
            Bundle envelope, or not exactly one Patient.
    """
    problems = _Problems()
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise InvalidFhir("send a FHIR Bundle", ["resourceType"])
    entries = data.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidFhir("entry must be a list", ["entry"])
    shell = {
        **data,
        "entry": [
            {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
            for e in entries
        ],
    }
    _validate(shell, "", problems)
    problems.raise_any()

    not_used: dict[str, int] = {}
    # Found before (resources of an XML Bundle that could not be read).
    left_out: list[Problem] = list(known_problems)
    resources: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    for n, entry in enumerate(entries):
        res = entry.get("resource")
        if res is None:
            continue  # a transaction entry without a resource (a DELETE) stores nothing
        path = f"entry[{n}].resource"
        kind = res.get("resourceType") if isinstance(res, dict) else None
        if not isinstance(kind, str):
            left_out.append(Problem(path=f"{path}.resourceType", message="not a resource"))
            continue
        if kind not in READ:
            not_used[kind] = not_used.get(kind, 0) + 1
            continue
        own = _Problems()
        if _validate(res, path, own):
            resources.append((n, entry, res))
        else:
            left_out.extend(own.listed())

    patients = [(n, e, r) for n, e, r in resources if r["resourceType"] == "Patient"]
    if len(patients) != 1:
        raise InvalidFhir(
            "the Bundle must be about exactly one Patient (a valid Patient resource)", ["entry"]
        )
    _n, patient_entry, patient = patients[0]
    patient_refs = _keys(patient_entry, patient)
    identifiers = [(i.get("system"), i.get("value")) for i in _list(patient.get("identifier"))]

    medications: dict[str, dict[str, Any]] = {}
    report_status: dict[str, str] = {}
    for _n, entry, res in resources:
        if res["resourceType"] == "Medication":
            for key in _keys(entry, res):
                medications[key] = res
        elif res["resourceType"] == "DiagnosticReport" and res.get("status") in WITHDRAWN_REPORT:
            for result in _list(res.get("result")):
                if result.get("reference"):
                    report_status[str(result["reference"])] = str(res["status"])

    items: list[Item] = []
    placeholders: dict[SummaryTable, list[str]] = {}
    seen: set[str] = set()
    for n, entry, res in resources:
        kind = res["resourceType"]
        if kind in ("Patient", "Medication"):
            continue
        path = f"entry[{n}].resource"
        own = _Problems()
        lim = _Limits(own, path)
        subject = "patient" if kind in ("AllergyIntolerance", "Immunization") else "subject"
        if _dict(res.get(subject)).get("reference") not in patient_refs:
            own.add(f"{path}.{subject}", "must refer to the Bundle's Patient")
        source = _source(entry, res)
        if source is None:
            own.add(f"{path}.id", "a resource needs an id (or a fullUrl) to be imported")
        elif source in seen:
            own.add(f"{path}.id", f"{source} appears twice")
        elif len(source) > 180:
            own.add(f"{path}.id", "the id is longer than 180 characters")
        if own.fields or source is None:
            left_out.extend(own.listed())
            continue
        seen.add(source)
        new: list[Item] = []
        concept = _dict(
            res.get("medicationCodeableConcept") or res.get("vaccineCode") or res.get("code")
        )
        if kind == "DiagnosticReport":
            # Read through its results, which are Observations of the Bundle.
            continue
        if _placeholder(concept):
            table: SummaryTable = (
                "conditions"
                if kind == "Condition"
                else "allergies"
                if kind == "AllergyIntolerance"
                else "medications"
                if kind.startswith("Medication")
                else "immunizations"
                if kind == "Immunization"
                else "procedures"
                if kind == "Procedure"
                else "observations"
            )
            placeholders.setdefault(table, []).append(_text_of(concept) or "")
            continue
        if kind == "Condition":
            values = _condition(res, lim)
            if values is not None:
                new.append(Item(table="conditions", source=source, values=values))
        elif kind in ("MedicationStatement", "MedicationRequest"):
            values = _medication(res, lim, medications)
            if values is not None:
                new.append(Item(table="medications", source=source, values=values))
        elif kind == "AllergyIntolerance":
            values = _allergy(res, lim)
            if values is not None:
                new.append(Item(table="allergies", source=source, values=values))
        elif kind == "Immunization":
            values = _event(res, lim, "vaccineCode", "occurrence", "occurred")
            if values is not None:
                new.append(Item(table="immunizations", source=source, values=values))
        elif kind == "Procedure":
            values = _event(res, lim, "code", "performed", "performed")
            if values is not None:
                new.append(Item(table="procedures", source=source, values=values))
        else:
            status = str(res["status"])
            withdrawn_by = next(
                (report_status[k] for k in _keys(entry, res) if k in report_status), None
            )
            for src, values in _observations(res, lim, source, withdrawn_by or status):
                new.append(Item(table="observations", source=src, values=values))
        if own.fields:
            left_out.extend(own.listed())
        else:
            items.extend(new)
    return ParsedBundle(
        bundle_type=str(data.get("type")),
        identifiers=identifiers,
        items=items,
        problems=left_out,
        not_used=not_used,
        no_information=placeholders,
    )


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
