"""FHIR in: an EMR's Bundle read into the rows of a patient's structured summary.

A county EMR sends a ``collection`` or ``transaction`` Bundle with one Patient and
their Conditions, MedicationStatements, AllergyIntolerances and Observations.
Every resource is validated (see ``fhir_common`` for the R4B package), then held
to the rules of the summary; a Bundle with any fault is refused whole, with the
path of each fault, and nothing of it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
CATEGORIES = ("vital-signs", "laboratory")
IMPORTED = ("Patient", "Condition", "MedicationStatement", "AllergyIntolerance", "Observation")
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
class ParsedBundle:
    """What an imported Bundle says: whose it is, and the summary rows."""

    identifiers: list[tuple[str | None, str | None]]
    items: list[Item]


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
        InvalidFhir: ``fields`` holds the path of each fault, as
            ``entry[2].resource.code.coding``.
    """
    problems = _Problems()
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise InvalidFhir("send a FHIR Bundle", ["resourceType"])
    if data.get("type") not in ("collection", "transaction"):
        raise InvalidFhir("the Bundle's type must be collection or transaction", ["type"])
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
        raise InvalidFhir("the Bundle must contain exactly one Patient", ["entry"])
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
