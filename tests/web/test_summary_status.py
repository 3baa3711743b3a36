"""Issue 14, the safety defect: a status under which the source withdrew an entry
(entered in error, refuted, cancelled, ...) is never shown as a fact, every other
status is shown with the entry, "no information" placeholders are not entries, and
the export gives every status back as it came in."""

from __future__ import annotations

from typing import Any

import pytest

from records.fhir_common import RESIDENT_ID_SYSTEM

from ..scenario import Scenario
from .test_summary import LAB, LIU_NID, VITAL, _lab, import_bundle

SUBJECT = {"reference": "Patient/p"}
PATIENT = {
    "resourceType": "Patient",
    "id": "p",
    "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": LIU_NID}],
}
IPS_ABSENT = "http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips"


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (PATIENT, *resources)],
    }


def _status(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": f"http://terminology.hl7.org/CodeSystem/{system}", "code": code}]}


def condition(verification: str | None, clinical: str | None = "active") -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": "c",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]},
        "subject": SUBJECT,
    }
    if clinical:
        res["clinicalStatus"] = _status("condition-clinical", clinical)
    if verification:
        res["verificationStatus"] = _status("condition-ver-status", verification)
    return res


def allergy(verification: str | None, clinical: str | None = "active") -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": "a",
        "code": {"text": "青霉素"},
        "criticality": "high",
        "patient": SUBJECT,
    }
    if clinical:
        res["clinicalStatus"] = _status("allergyintolerance-clinical", clinical)
    if verification:
        res["verificationStatus"] = _status("allergyintolerance-verification", verification)
    return res


def medication(kind: str, status: str) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": kind,
        "id": "m",
        "status": status,
        "medicationCodeableConcept": {"text": "阿司匹林肠溶片"},
        "subject": SUBJECT,
    }
    if kind == "MedicationRequest":
        res["intent"] = "order"
    return res


def glucose(status: str) -> dict[str, Any]:
    res = _lab("g", "1558-6", "空腹血糖", 30, "mmol/L", 3.9, 6.1)
    res["status"] = status
    res["subject"] = SUBJECT
    return res


def systolic(status: str) -> dict[str, Any]:
    res = _lab("s", "8480-6", "收缩压", 180, "mmHg", 90, 139, VITAL)
    res["status"] = status
    res["subject"] = SUBJECT
    return res


async def _summary_and_export(scenario: Scenario, *resources: dict[str, Any]) -> tuple[Any, Any]:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await import_bundle(clinic, pid, _bundle(*resources))
    assert status == 200, data
    assert data["imported"]["left_out"] == [], data["imported"]
    c = await scenario.consultation(consent=("consultation",))
    assert c.patient_id == pid
    status, bundle = await clinic.get(f"/api/consultations/{c.json['id']}/fhir")
    assert status == 200, bundle
    return data["summary"], bundle


def _exported(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


CONDITION_VERIFICATION = [
    ("unconfirmed", True),
    ("provisional", True),
    ("differential", True),
    ("confirmed", True),
    (None, True),
    ("refuted", False),
    ("entered-in-error", False),
]


@pytest.mark.parametrize(("verification", "shown"), CONDITION_VERIFICATION)
async def test_condition_by_verification_status(
    scenario: Scenario, verification: str | None, shown: bool
) -> None:
    clinical = None if verification == "entered-in-error" else "active"
    summary, bundle = await _summary_and_export(scenario, condition(verification, clinical))
    if shown:
        [c] = summary["conditions"]
        assert c["verification_status"] == verification
        assert summary["withdrawn"]["conditions"] == 0
    else:
        assert summary["conditions"] == []
        assert summary["withdrawn"]["conditions"] == 1
    [exported] = _exported(bundle, "Condition")
    got = exported.get("verificationStatus", {}).get("coding", [{}])[0].get("code")
    assert got == verification


@pytest.mark.parametrize(
    "clinical", ["active", "recurrence", "relapse", "inactive", "remission", "resolved"]
)
async def test_condition_clinical_status_is_shown_and_exported(
    scenario: Scenario, clinical: str
) -> None:
    summary, bundle = await _summary_and_export(scenario, condition("confirmed", clinical))
    [c] = summary["conditions"]
    assert c["clinical_status"] == clinical
    [exported] = _exported(bundle, "Condition")
    assert exported["clinicalStatus"]["coding"][0]["code"] == clinical


@pytest.mark.parametrize(
    ("verification", "shown"),
    [
        ("unconfirmed", True),
        ("confirmed", True),
        (None, True),
        ("refuted", False),
        ("entered-in-error", False),
    ],
)
async def test_allergy_by_verification_status(
    scenario: Scenario, verification: str | None, shown: bool
) -> None:
    clinical = None if verification == "entered-in-error" else "active"
    summary, bundle = await _summary_and_export(scenario, allergy(verification, clinical))
    if shown:
        [a] = summary["allergies"]
        assert (a["criticality"], a["verification_status"]) == ("high", verification)
    else:
        # A refuted penicillin allergy is not shown, let alone as high risk.
        assert summary["allergies"] == []
        assert summary["withdrawn"]["allergies"] == 1
    [exported] = _exported(bundle, "AllergyIntolerance")
    got = exported.get("verificationStatus", {}).get("coding", [{}])[0].get("code")
    assert got == verification
    # ait-1 / ait-2: a clinical status unless entered in error, and none then.
    assert ("clinicalStatus" in exported) == (verification != "entered-in-error")


@pytest.mark.parametrize("clinical", ["active", "inactive", "resolved"])
async def test_allergy_clinical_status_is_shown_and_exported(
    scenario: Scenario, clinical: str
) -> None:
    summary, bundle = await _summary_and_export(scenario, allergy("confirmed", clinical))
    [a] = summary["allergies"]
    assert a["clinical_status"] == clinical
    [exported] = _exported(bundle, "AllergyIntolerance")
    assert exported["clinicalStatus"]["coding"][0]["code"] == clinical


MEDICATION_STATUSES = [
    ("MedicationStatement", "active", True),
    ("MedicationStatement", "completed", True),
    ("MedicationStatement", "intended", True),
    ("MedicationStatement", "stopped", True),
    ("MedicationStatement", "on-hold", True),
    ("MedicationStatement", "unknown", True),
    ("MedicationStatement", "not-taken", False),
    ("MedicationStatement", "entered-in-error", False),
    ("MedicationRequest", "active", True),
    ("MedicationRequest", "on-hold", True),
    ("MedicationRequest", "completed", True),
    ("MedicationRequest", "stopped", True),
    ("MedicationRequest", "unknown", True),
    ("MedicationRequest", "cancelled", False),
    ("MedicationRequest", "draft", False),
    ("MedicationRequest", "entered-in-error", False),
]


@pytest.mark.parametrize(("kind", "status", "shown"), MEDICATION_STATUSES)
async def test_medication_by_status(
    scenario: Scenario, kind: str, status: str, shown: bool
) -> None:
    summary, bundle = await _summary_and_export(scenario, medication(kind, status))
    if shown:
        [m] = summary["medications"]
        assert m["status"] == status
    else:
        assert summary["medications"] == []
        assert summary["withdrawn"]["medications"] == 1
    exported = _exported(bundle, "MedicationStatement") + _exported(bundle, "MedicationRequest")
    assert [r["status"] for r in exported] == [status]


OBSERVATION_STATUSES = [
    ("registered", True),
    ("preliminary", True),
    ("final", True),
    ("amended", True),
    ("corrected", True),
    ("unknown", True),
    ("cancelled", False),
    ("entered-in-error", False),
]


@pytest.mark.parametrize(("status", "shown"), OBSERVATION_STATUSES)
async def test_observation_by_status(scenario: Scenario, status: str, shown: bool) -> None:
    summary, bundle = await _summary_and_export(scenario, glucose(status), systolic(status))
    if shown:
        [lab] = summary["labs"]
        [vital] = summary["vitals"]
        assert (lab["status"], lab["flag"]) == (status, "H")
        assert (vital["status"], vital["value"]) == (status, 180)
    else:
        # No cancelled glucose of 30 flagged H, no entered-in-error systolic 180.
        assert summary["labs"] == [] and summary["vitals"] == []
        assert (summary["withdrawn"]["labs"], summary["withdrawn"]["vitals"]) == (1, 1)
    exported = _exported(bundle, "Observation")
    assert [o["status"] for o in exported] == [status, status]
    # A withdrawn result carries no interpretation (no "H" in the export either).
    assert all(("interpretation" in o) == shown for o in exported)


@pytest.mark.parametrize(("status", "shown"), [("final", True), ("entered-in-error", False)])
async def test_a_withdrawn_report_withdraws_its_results(
    scenario: Scenario, status: str, shown: bool
) -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "r",
        "status": status,
        "category": [LAB],
        "code": {"text": "血糖"},
        "subject": SUBJECT,
        "result": [{"reference": "Observation/g"}],
    }
    summary, _ = await _summary_and_export(scenario, report, glucose("final"))
    assert len(summary["labs"]) == (1 if shown else 0)


@pytest.mark.parametrize(
    ("resource", "table"),
    [
        (
            {
                "resourceType": "AllergyIntolerance",
                "id": "x",
                "clinicalStatus": _status("allergyintolerance-clinical", "active"),
                "code": {"coding": [{"system": IPS_ABSENT, "code": "no-allergy-info"}]},
                "patient": SUBJECT,
            },
            "allergies",
        ),
        (
            {
                "resourceType": "MedicationStatement",
                "id": "x",
                "status": "unknown",
                "medicationCodeableConcept": {
                    "coding": [{"system": IPS_ABSENT, "code": "no-medication-info"}]
                },
                "subject": SUBJECT,
            },
            "medications",
        ),
        (
            {
                "resourceType": "Condition",
                "id": "x",
                "code": {"coding": [{"system": IPS_ABSENT, "code": "no-problem-info"}]},
                "subject": SUBJECT,
            },
            "conditions",
        ),
    ],
)
async def test_no_information_placeholders_are_not_entries(
    scenario: Scenario, resource: dict[str, Any], table: str
) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await import_bundle(clinic, pid, _bundle(resource))
    assert status == 200, data
    assert data["summary"][table] == []
    assert list(data["imported"]["no_information"]) == [table]
    assert data["imported"]["created"] == {}


def immunization(status: str) -> dict[str, Any]:
    return {
        "resourceType": "Immunization",
        "id": "i",
        "status": status,
        "vaccineCode": {
            "coding": [
                {"system": "http://hl7.org/fhir/sid/cvx", "code": "140", "display": "Influenza"}
            ]
        },
        "patient": SUBJECT,
        "occurrenceDateTime": "2025-10-01",
    }


def procedure(status: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": "pr",
        "status": status,
        "code": {"text": "冠状动脉造影"},
        "subject": SUBJECT,
        "performedDateTime": "2024-05-06T10:00:00+08:00",
    }


@pytest.mark.parametrize(
    ("status", "shown"), [("completed", True), ("not-done", False), ("entered-in-error", False)]
)
async def test_immunization_by_status(scenario: Scenario, status: str, shown: bool) -> None:
    summary, bundle = await _summary_and_export(scenario, immunization(status))
    assert len(summary["immunizations"]) == (1 if shown else 0)
    assert summary["withdrawn"]["immunizations"] == (0 if shown else 1)
    if shown:
        [i] = summary["immunizations"]
        assert (i["display"], i["occurred"], i["status"]) == ("Influenza", "2025-10-01", status)
    assert [r["status"] for r in _exported(bundle, "Immunization")] == [status]


PROCEDURE_STATUSES = [
    ("preparation", True),
    ("in-progress", True),
    ("on-hold", True),
    ("stopped", True),
    ("completed", True),
    ("unknown", True),
    ("not-done", False),
    ("entered-in-error", False),
]


@pytest.mark.parametrize(("status", "shown"), PROCEDURE_STATUSES)
async def test_procedure_by_status(scenario: Scenario, status: str, shown: bool) -> None:
    summary, bundle = await _summary_and_export(scenario, procedure(status))
    assert len(summary["procedures"]) == (1 if shown else 0)
    assert summary["withdrawn"]["procedures"] == (0 if shown else 1)
    [exported] = _exported(bundle, "Procedure")
    assert exported["status"] == status
    assert exported["performedDateTime"] == "2024-05-06T10:00:00+08:00"
