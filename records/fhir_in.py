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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from records import fhir_in_rows as rows
from records.errors import InvalidFhir
from records.fhir_common import RESIDENT_ID_SYSTEM, validate
from records.summary import SummaryTable

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
    identifiers = [
        (i.get("system"), i.get("value")) for i in rows.as_list(patient.get("identifier"))
    ]

    medications: dict[str, dict[str, Any]] = {}
    report_status: dict[str, str] = {}
    for _n, entry, res in resources:
        if res["resourceType"] == "Medication":
            for key in _keys(entry, res):
                medications[key] = res
        elif res["resourceType"] == "DiagnosticReport" and res.get("status") in WITHDRAWN_REPORT:
            for result in rows.as_list(res.get("result")):
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
        lim = rows.Limits(own, path)
        subject = "patient" if kind in ("AllergyIntolerance", "Immunization") else "subject"
        if rows.as_dict(res.get(subject)).get("reference") not in patient_refs:
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
        concept = rows.as_dict(
            res.get("medicationCodeableConcept") or res.get("vaccineCode") or res.get("code")
        )
        if kind == "DiagnosticReport":
            # Read through its results, which are Observations of the Bundle.
            continue
        if rows.placeholder(concept):
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
            placeholders.setdefault(table, []).append(rows.text_of(concept) or "")
            continue
        if kind == "Condition":
            values = rows.condition(res, lim)
            if values is not None:
                new.append(Item(table="conditions", source=source, values=values))
        elif kind in ("MedicationStatement", "MedicationRequest"):
            values = rows.medication(res, lim, medications)
            if values is not None:
                new.append(Item(table="medications", source=source, values=values))
        elif kind == "AllergyIntolerance":
            values = rows.allergy(res, lim)
            if values is not None:
                new.append(Item(table="allergies", source=source, values=values))
        elif kind == "Immunization":
            values = rows.event(res, lim, "vaccineCode", "occurrence", "occurred")
            if values is not None:
                new.append(Item(table="immunizations", source=source, values=values))
        elif kind == "Procedure":
            values = rows.event(res, lim, "code", "performed", "performed")
            if values is not None:
                new.append(Item(table="procedures", source=source, values=values))
        else:
            status = str(res["status"])
            withdrawn_by = next(
                (report_status[k] for k in _keys(entry, res) if k in report_status), None
            )
            for src, values in rows.observations(res, lim, source, withdrawn_by or status):
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
