"""FHIR R4 resources to summary rows: one function per resource kind.

``records.fhir_in`` walks a Bundle, validates each resource and decides what is
used; the functions here turn one resource (a Condition, a medication, an
AllergyIntolerance, observations and the DiagnosticReports that hold them) into
the row the summary stores, with its statuses, or None when it is not a fact
(a "none known" placeholder). Problems are reported through ``Limits``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from records.fhir_common import ICD10_SYSTEM
from records.summary import join_code, split_code

if TYPE_CHECKING:
    from records.fhir_in import _Problems


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
SNOMED_SYSTEM = "http://snomed.info/sct"

ICD11_SYSTEM = "http://id.who.int/icd/release/11/mms"

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

# FHIR requires an offset once a time is given; a bare date (or year-month) is
# read as its first midnight in China Standard Time (UTC+8, no daylight saving),
# the clock of the EMRs that send them.
CHINA = timezone(timedelta(hours=8))


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def text_of(concept: Mapping[str, Any]) -> str | None:
    """The human text of a CodeableConcept: its text, else a coding's display or code."""
    if concept.get("text"):
        return str(concept["text"])
    for coding in as_list(concept.get("coding")):
        if coding.get("display"):
            return str(coding["display"])
    for coding in as_list(concept.get("coding")):
        if coding.get("code"):
            return str(coding["code"])
    return None


def first_code(concept: Mapping[str, Any], max_len: int = 64) -> str | None:
    for coding in as_list(concept.get("coding")):
        if coding.get("code"):
            return join_code(coding.get("system"), str(coding["code"]), max_len)
    return None


def reference_ok(resource: Mapping[str, Any], key: str, patient_refs: set[str]) -> bool:
    return as_dict(resource.get(key)).get("reference") in patient_refs


def parse_datetime(value: str) -> datetime:
    """A FHIR dateTime or instant as an aware datetime (partial dates at their start)."""
    if len(value) == 4:
        value += "-01-01"
    elif len(value) == 7:
        value += "-01"
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=CHINA)


class Limits:
    """Column sizes: a value that does not fit is refused, never cut short silently."""

    def __init__(self, problems: _Problems, path: str) -> None:
        self.problems = problems
        self.path = path

    def fit(self, value: str | None, max_len: int, where: str) -> str | None:
        if value is not None and len(value) > max_len:
            self.problems.add(f"{self.path}.{where}", f"longer than {max_len} characters")
        return value


def placeholder(concept: Mapping[str, Any]) -> bool:
    """Whether a code says "no information" / "none known" rather than naming an entry."""
    return any(
        c.get("system") == ABSENT_UNKNOWN_SYSTEM
        or (c.get("system") == SNOMED_SYSTEM and c.get("code") in NONE_KNOWN_SNOMED)
        for c in as_list(concept.get("coding"))
    )


def status_code(concept: Any) -> str | None:
    return next(
        (str(c["code"]) for c in as_list(as_dict(concept).get("coding")) if c.get("code")), None
    )


def condition(res: dict[str, Any], lim: Limits) -> dict[str, Any] | None:
    code = as_dict(res.get("code"))
    codings = [c for c in as_list(code.get("coding")) if c.get("code")]
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
    text = (chosen or {}).get("display") or text_of(code)
    if stored is None and not text:
        lim.problems.add(f"{lim.path}.code", "a Condition needs a code or a text")
        return None
    return {
        "code": stored or "",
        "display": lim.fit(str(text or stored), 300, "code"),
        "clinical_status": lim.fit(status_code(res.get("clinicalStatus")), 32, "clinicalStatus"),
        "verification_status": lim.fit(
            status_code(res.get("verificationStatus")), 32, "verificationStatus"
        ),
        "onset": lim.fit(res.get("onsetDateTime"), 32, "onsetDateTime"),
    }


def medication(
    res: dict[str, Any], lim: Limits, medications: Mapping[str, dict[str, Any]]
) -> dict[str, Any] | None:
    concept = res.get("medicationCodeableConcept")
    where = "medicationCodeableConcept"
    if concept is None and isinstance(res.get("medicationReference"), dict):
        where = "medicationReference"
        ref = str(res["medicationReference"].get("reference") or "")
        contained = {
            f"#{c.get('id')}": c
            for c in as_list(res.get("contained"))
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
    if not isinstance(concept, dict) or not text_of(concept):
        lim.problems.add(f"{lim.path}.{where}", "the medication has no code or name")
        return None
    dosages = as_list(res.get("dosage")) or as_list(res.get("dosageInstruction"))
    dosage = "; ".join(str(d["text"]) for d in dosages if d.get("text"))
    return {
        "code": first_code(concept),
        "display": lim.fit(text_of(concept), 300, where),
        "dosage": lim.fit(dosage or None, 500, "dosage"),
        "status": lim.fit(str(res["status"]), 32, "status"),
    }


def allergy(res: dict[str, Any], lim: Limits) -> dict[str, Any] | None:
    concept = as_dict(res.get("code"))
    if not text_of(concept):
        lim.problems.add(f"{lim.path}.code", "an AllergyIntolerance needs a code")
        return None
    manifestations = [
        text
        for reaction in as_list(res.get("reaction"))
        for m in as_list(reaction.get("manifestation"))
        if (text := text_of(m))
    ]
    return {
        "code": first_code(concept),
        "display": lim.fit(text_of(concept), 300, "code"),
        "criticality": lim.fit(res.get("criticality"), 32, "criticality"),
        "reaction": lim.fit("; ".join(manifestations) or None, 300, "reaction"),
        "clinical_status": lim.fit(status_code(res.get("clinicalStatus")), 32, "clinicalStatus"),
        "verification_status": lim.fit(
            status_code(res.get("verificationStatus")), 32, "verificationStatus"
        ),
    }


def measurement(part: dict[str, Any], lim: Limits, where: str) -> dict[str, Any] | None:
    """Code, value, unit and range of an Observation or of one of its components."""
    concept = as_dict(part.get("code"))
    code = first_code(concept)
    if code is None:
        lim.problems.add(f"{lim.path}.{where}code.coding", "an Observation needs a coded code")
        return None
    values: dict[str, Any] = {
        "code": code,
        "display": lim.fit(text_of(concept), 300, f"{where}code"),
        "value_number": None,
        "value_text": None,
        "unit": None,
    }
    if "valueQuantity" in part:
        quantity = as_dict(part["valueQuantity"])
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
    elif isinstance(part.get("valueCodeableConcept"), dict) and text_of(
        part["valueCodeableConcept"]
    ):
        text = text_of(part["valueCodeableConcept"])
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
    ranges = as_list(part.get("referenceRange"))
    low = as_dict(ranges[0].get("low")) if ranges else {}
    high = as_dict(ranges[0].get("high")) if ranges else {}
    values["ref_low"] = float(low["value"]) if low.get("value") is not None else None
    values["ref_high"] = float(high["value"]) if high.get("value") is not None else None
    if values["unit"] is None:
        values["unit"] = lim.fit(low.get("unit") or high.get("unit"), 32, f"{where}referenceRange")
    return values


def event(
    res: dict[str, Any], lim: Limits, concept_key: str, when_key: str, column: str
) -> dict[str, Any] | None:
    """An Immunization (vaccineCode, occurrence) or Procedure (code, performed)."""
    concept = as_dict(res.get(concept_key))
    if not text_of(concept):
        lim.problems.add(f"{lim.path}.{concept_key}", "needs a code or a text")
        return None
    when = (
        res.get(f"{when_key}DateTime")
        or res.get(f"{when_key}String")
        or as_dict(res.get(f"{when_key}Period")).get("start")
    )
    return {
        "code": first_code(concept),
        "display": lim.fit(text_of(concept), 300, concept_key),
        "status": lim.fit(str(res["status"]), 32, "status"),
        column: lim.fit(str(when) if when else None, 32, when_key),
    }


def category(res: Mapping[str, Any]) -> str:
    codes = [
        str(c["code"])
        for concept in as_list(res.get("category"))
        for c in as_list(concept.get("coding"))
        if c.get("code")
    ]
    for preferred in ("vital-signs", "laboratory"):
        if preferred in codes:
            return preferred
    return codes[0][:32] if codes else "other"


def observations(
    res: dict[str, Any], lim: Limits, source: str, status: str
) -> list[tuple[str, dict[str, Any]]]:
    effective = (
        res.get("effectiveDateTime")
        or res.get("effectiveInstant")
        or as_dict(res.get("effectivePeriod")).get("start")
        or res.get("issued")
    )
    common = {
        "category": category(res),
        "status": lim.fit(status, 32, "status"),
        "effective_at": parse_datetime(str(effective)) if effective else None,
    }
    has_value = any(key.startswith("value") for key in res)
    components = as_list(res.get("component"))
    if not has_value and not components and as_list(res.get("hasMember")):
        # A grouping (a panel such as "Blood typing"): its members are the results.
        return []
    if not has_value and components:
        # A panel such as blood pressure: one summary row per component.
        out = []
        for n, component in enumerate(components):
            values = measurement(component, lim, f"component[{n}].")
            if values is not None:
                _system, code = split_code(values["code"])
                out.append((f"{source}#{code}", {**common, **values}))
        return out
    values = measurement(res, lim, "")
    return [(source, {**common, **values})] if values is not None else []
