"""The structured summary: FHIR import from a county EMR, flags, re-import, access."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from records.demo import demo_national_id
from records.fhir_common import RESIDENT_ID_SYSTEM
from records.schema import allergies, audit_log, conditions, medications, observations
from web.keys import DB

from ..scenario import Scenario

LoginAs = Any
# 刘大爷, the first demo patient of clinic1.
LIU_NID = demo_national_id("360101", date(1951, 3, 14), 1)
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
VITAL = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}
LAB = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}
WHEN = "2026-11-20T08:30:00+08:00"


def _lab(
    rid: str,
    code: str,
    name: str,
    value: float,
    unit: str,
    low: float | None,
    high: float | None,
    category: dict[str, Any] = LAB,
) -> dict[str, Any]:
    ref: dict[str, Any] = {}
    if low is not None:
        ref["low"] = {"value": low, "unit": unit}
    if high is not None:
        ref["high"] = {"value": high, "unit": unit}
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [category],
        "code": {"coding": [{"system": LOINC, "code": code, "display": name}], "text": name},
        "subject": {"reference": "Patient/emr-p1"},
        "effectiveDateTime": WHEN,
        "valueQuantity": {"value": value, "unit": unit},
    }
    if ref:
        res["referenceRange"] = [ref]
    return res


def sample_bundle(national_id: str = LIU_NID, *, glucose: float = 7.8) -> dict[str, Any]:
    """A county EMR's collection Bundle for 刘大爷."""
    subject = {"reference": "Patient/emr-p1"}
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": "emr-p1",
            "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": national_id}],
            "name": [{"text": "刘大爷"}],
            "gender": "male",
            "birthDate": "1951-03-14",
        },
        {
            "resourceType": "Condition",
            "id": "cond-htn",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {
                "coding": [{"system": ICD10, "code": "I10", "display": "原发性高血压"}],
                "text": "高血压",
            },
            "subject": subject,
            "onsetDateTime": "2015-06",
        },
        {
            "resourceType": "Condition",
            "id": "cond-dm",
            "code": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/icd10",
                        "code": "E11.9",
                        "display": "2型糖尿病",
                    }
                ]
            },
            "subject": subject,
            "onsetDateTime": "2018-03-01",
        },
        {
            "resourceType": "MedicationStatement",
            "id": "med-amlo",
            "status": "active",
            "medicationCodeableConcept": {
                "coding": [
                    {"system": "http://www.whocc.no/atc", "code": "C08CA01", "display": "氨氯地平"}
                ],
                "text": "苯磺酸氨氯地平片 5mg",
            },
            "subject": subject,
            "dosage": [{"text": "5mg 口服 每日一次"}],
        },
        {
            "resourceType": "MedicationStatement",
            "id": "med-metf",
            "status": "active",
            "medicationCodeableConcept": {"text": "二甲双胍缓释片"},
            "subject": subject,
            "dosage": [{"text": "0.5g 口服 每日两次"}],
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": "alg-pen",
            "code": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "764146007",
                        "display": "Penicillin",
                    }
                ],
                "text": "青霉素",
            },
            "criticality": "high",
            "reaction": [{"manifestation": [{"text": "皮疹"}]}],
            "patient": subject,
        },
        {
            "resourceType": "Observation",
            "id": "bp",
            "status": "final",
            "category": [VITAL],
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}], "text": "血压"},
            "subject": subject,
            "effectiveDateTime": WHEN,
            "component": [
                {
                    "code": {
                        "coding": [{"system": LOINC, "code": "8480-6"}],
                        "text": "收缩压",
                    },
                    "valueQuantity": {"value": 152, "unit": "mmHg"},
                    "referenceRange": [{"low": {"value": 90}, "high": {"value": 139}}],
                },
                {
                    "code": {
                        "coding": [{"system": LOINC, "code": "8462-4"}],
                        "text": "舒张压",
                    },
                    "valueQuantity": {"value": 92, "unit": "mmHg"},
                },
            ],
        },
        _lab("hr", "8867-4", "心率", 78, "/min", 60, 100, VITAL),
        _lab("glu", "1558-6", "空腹血糖", glucose, "mmol/L", 3.9, 6.1),
        _lab("k", "2823-3", "血钾", 3.2, "mmol/L", 3.5, 5.3),
        _lab("hb", "718-7", "血红蛋白", 135, "g/L", 130, 175),
        {
            "resourceType": "Observation",
            "id": "hbsag",
            "status": "final",
            "category": [LAB],
            "code": {"coding": [{"system": LOINC, "code": "5196-1"}], "text": "乙肝表面抗原"},
            "subject": subject,
            "effectiveDateTime": WHEN,
            "valueString": "阴性",
        },
    ]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"http://emr.example/fhir/{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        ],
    }


async def import_bundle(clinic: Any, patient_id: str, bundle: Any) -> tuple[int, Any]:
    status, data = await clinic.post(f"/api/patients/{patient_id}/fhir", bundle)
    return status, data


def by_code(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["code"]: i for i in items}


async def stored_rows(app: Any) -> int:
    async with app[DB].read() as conn:
        total = 0
        for table in (conditions, medications, allergies, observations):
            total += (
                await conn.execute(sa.select(sa.func.count()).select_from(table))
            ).scalar_one()
        return int(total)


async def test_import_fills_the_summary_with_units_ranges_and_flags(scenario: Scenario) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await import_bundle(clinic, pid, sample_bundle())
    assert status == 200, data
    assert data["imported"]["created"] == {
        "conditions": 2,
        "medications": 2,
        "allergies": 1,
        "observations": 7,
    }
    assert data["imported"]["updated"] == {}

    status, data = await clinic.get(f"/api/patients/{pid}/summary")
    assert status == 200
    s = data["summary"]
    conds = by_code(s["conditions"])
    assert set(conds) == {"I10", "E11.9"}
    assert conds["I10"]["display"] == "原发性高血压"
    assert conds["I10"]["clinical_status"] == "active"
    assert conds["I10"]["onset"] == "2015-06"
    assert conds["E11.9"]["display"] == "2型糖尿病"

    meds = {m["display"]: m for m in s["medications"]}
    assert meds["苯磺酸氨氯地平片 5mg"]["dosage"] == "5mg 口服 每日一次"
    assert meds["苯磺酸氨氯地平片 5mg"]["code"] == "C08CA01"
    assert meds["苯磺酸氨氯地平片 5mg"]["system"] == "http://www.whocc.no/atc"
    assert meds["二甲双胍缓释片"]["dosage"] == "0.5g 口服 每日两次"
    assert meds["二甲双胍缓释片"]["code"] is None

    [allergy] = s["allergies"]
    assert (allergy["display"], allergy["criticality"], allergy["reaction"]) == (
        "青霉素",
        "high",
        "皮疹",
    )

    vitals = by_code(s["vitals"])
    assert set(vitals) == {"8480-6", "8462-4", "8867-4"}
    assert vitals["8480-6"]["value"] == 152
    assert vitals["8480-6"]["unit"] == "mmHg"
    assert vitals["8480-6"]["range"] == {"low": 90, "high": 139}
    assert vitals["8480-6"]["flag"] == "H"
    assert vitals["8480-6"]["source"] == "Observation/bp#8480-6"
    assert vitals["8462-4"]["range"] is None and vitals["8462-4"]["flag"] is None
    assert vitals["8867-4"]["flag"] is None

    labs = by_code(s["labs"])
    assert labs["1558-6"] | {"id": None} == {
        "id": None,
        "code": "1558-6",
        "system": LOINC,
        "display": "空腹血糖",
        "value": 7.8,
        "unit": "mmol/L",
        "range": {"low": 3.9, "high": 6.1},
        "flag": "H",
        "effective_at": "2026-11-20T00:30:00+00:00",
        "source": "Observation/glu",
        "status": "final",
        "category": "laboratory",
    }
    assert (labs["2823-3"]["value"], labs["2823-3"]["flag"]) == (3.2, "L")
    assert (labs["718-7"]["value"], labs["718-7"]["flag"]) == (135, None)
    assert labs["5196-1"]["value"] == "阴性"
    assert labs["5196-1"]["flag"] is None and labs["5196-1"]["unit"] is None


async def test_a_value_with_a_comparator_is_kept_as_written_and_not_flagged(
    scenario: Scenario,
) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    bundle = sample_bundle()
    crp = _lab("crp", "1988-5", "C反应蛋白", 0.5, "mg/L", None, 10)
    crp["valueQuantity"]["comparator"] = "<"
    crp["effectiveDateTime"] = "2026-11-20"  # a date: midnight, China Standard Time
    bundle["entry"].append({"resource": crp})
    status, data = await import_bundle(clinic, pid, bundle)
    assert status == 200, data
    item = by_code(data["summary"]["labs"])["1988-5"]
    assert (item["value"], item["unit"], item["flag"]) == ("<0.5", "mg/L", None)
    assert item["range"] == {"low": None, "high": 10}
    assert item["effective_at"] == "2026-11-19T16:00:00+00:00"


@pytest.mark.parametrize(
    ("value", "flag"),
    [(3.8, "L"), (3.9, None), (6.1, None), (6.2, "H")],
)
async def test_flags_are_strictly_outside_the_range(
    scenario: Scenario, value: float, flag: str | None
) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await import_bundle(clinic, pid, sample_bundle(glucose=value))
    assert status == 200, data
    labs = by_code(data["summary"]["labs"])
    assert (labs["1558-6"]["value"], labs["1558-6"]["flag"]) == (value, flag)


async def test_reimport_updates_by_source_instead_of_duplicating(
    scenario: Scenario, app: Any
) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, _ = await import_bundle(clinic, pid, sample_bundle())
    assert status == 200
    rows = await stored_rows(app)
    status, data = await import_bundle(clinic, pid, sample_bundle(glucose=5.2))
    assert status == 200, data
    assert data["imported"]["created"] == {}
    assert sum(data["imported"]["updated"].values()) == 12
    assert await stored_rows(app) == rows
    labs = by_code(data["summary"]["labs"])
    assert (labs["1558-6"]["value"], labs["1558-6"]["flag"]) == (5.2, None)
    assert len(data["summary"]["labs"]) == 4


async def test_a_transaction_bundle_with_urn_uuids_is_accepted(scenario: Scenario) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    patient_url = "urn:uuid:6f1c1a9e-8f7b-4d5e-9a61-3c1d2b3a4f50"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": LIU_NID.lower()}],
                },
                "request": {"method": "PUT", "url": "Patient?identifier=x"},
            },
            {
                "fullUrl": "urn:uuid:0d3e2c1b-1111-4222-8333-944455556666",
                "resource": {
                    "resourceType": "Condition",
                    "code": {"coding": [{"system": ICD10, "code": "J44.1"}]},
                    "subject": {"reference": patient_url},
                },
                "request": {"method": "POST", "url": "Condition"},
            },
        ],
    }
    status, data = await import_bundle(clinic, pid, bundle)
    assert status == 200, data
    [cond] = data["summary"]["conditions"]
    assert (cond["code"], cond["display"]) == ("J44.1", "J44.1")
    assert cond["source"] == "urn:uuid:0d3e2c1b-1111-4222-8333-944455556666"


def _broken(change: str) -> dict[str, Any]:
    bundle = sample_bundle()
    entries = bundle["entry"]
    res = {e["resource"]["id"]: e["resource"] for e in entries}
    if change == "bundle_resource_type":
        bundle["resourceType"] = "Patient"
    elif change == "entry_resource_type":
        entries.append({"resource": {"resourceType": "Claim", "id": "cl1", "status": "active"}})
    elif change == "unknown_element":
        res["cond-dm"]["severityScore"] = 3
    elif change == "missing_icd10":
        del res["cond-htn"]["code"]
    elif change == "not_icd10":
        res["cond-dm"]["code"]["coding"][0]["system"] = "http://snomed.info/sct"
    elif change == "bad_date":
        res["cond-dm"]["onsetDateTime"] = "2018-13-45"
    elif change == "bad_number":
        res["glu"]["valueQuantity"]["value"] = "seven"
    elif change == "no_category":
        del res["k"]["category"]
    elif change == "other_subject":
        res["hb"]["subject"] = {"reference": "Patient/someone-else"}
    elif change == "no_value":
        del res["hr"]["valueQuantity"]
    elif change == "missing_status":
        del res["med-metf"]["status"]
    elif change == "two_patients":
        entries.append(copy.deepcopy(entries[0]))
    return bundle


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("unknown_element", "entry[2].resource.severityScore"),
        ("missing_icd10", "entry[1].resource.code"),
        ("bad_date", "entry[2].resource.onsetDateTime"),
        ("bad_number", "entry[8].resource.valueQuantity.value"),
        ("other_subject", "entry[10].resource.subject"),
        ("no_value", "entry[7].resource.value[x]"),
        ("missing_status", "entry[4].resource.status"),
    ],
)
async def test_an_invalid_resource_is_reported_by_path_and_the_rest_is_stored(
    scenario: Scenario, app: Any, change: str, field: str
) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await import_bundle(clinic, pid, _broken(change))
    assert status == 200, data
    [left_out] = data["imported"]["left_out"]
    assert left_out["path"] == field, data["imported"]
    assert left_out["message"]
    # The twelve rows of the sample less the one left out (a blood pressure panel
    # would be two rows, but no change here touches it).
    assert sum(data["imported"]["created"].values()) == 11
    assert await stored_rows(app) == 11


@pytest.mark.parametrize(
    ("change", "field"),
    [("bundle_resource_type", "resourceType"), ("two_patients", "entry")],
)
async def test_a_bundle_that_is_not_about_one_patient_is_refused_and_nothing_stored(
    scenario: Scenario, app: Any, change: str, field: str
) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await import_bundle(clinic, pid, _broken(change))
    assert status == 400, data
    assert data["error"]["code"] == "invalid_fhir"
    assert field in data["error"]["fields"], data
    assert data["error"]["message"]
    assert await stored_rows(app) == 0


async def test_what_the_summary_does_not_use_is_kept_aside_and_counted(scenario: Scenario) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    bundle = _broken("entry_resource_type")
    bundle["entry"].append({"resource": {"resourceType": "Encounter", "status": "finished"}})
    bundle["type"] = "batch"
    status, data = await import_bundle(clinic, pid, bundle)
    assert status == 200, data
    assert data["imported"]["not_used"] == {"Claim": 1, "Encounter": 1}
    assert data["imported"]["left_out"] == []
    assert sum(data["imported"]["created"].values()) == 12


async def test_conditions_coded_only_in_snomed_or_icd11_are_read(scenario: Scenario) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    bundle = _broken("not_icd10")
    res = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    res["cond-htn"]["code"] = {
        "coding": [
            {"system": "http://id.who.int/icd/release/11/mms", "code": "BA00", "display": "HTN"}
        ]
    }
    status, data = await import_bundle(clinic, pid, bundle)
    assert status == 200, data
    conds = {c["code"]: c for c in data["summary"]["conditions"]}
    assert conds["E11.9"]["system"] == "http://snomed.info/sct"
    assert conds["E11.9"]["display"] == "2型糖尿病"
    assert conds["BA00"]["system"] == "http://id.who.int/icd/release/11/mms"
    assert conds["BA00"]["display"] == "HTN"


async def test_a_bundle_about_someone_else_is_a_conflict(scenario: Scenario, app: Any) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    other = demo_national_id("360101", date(1962, 11, 2), 2)  # 陈阿姨's number
    status, data = await import_bundle(clinic, pid, sample_bundle(other))
    assert (status, data["error"]["code"]) == (409, "patient_mismatch")
    assert await stored_rows(app) == 0
    # Without a resident ID number the clinic's choice of patient stands.
    bundle = sample_bundle()
    bundle["entry"][0]["resource"]["identifier"][0]["system"] = "urn:oid:1.2.3"
    status, data = await import_bundle(clinic, pid, bundle)
    assert status == 200, data
    assert await stored_rows(app) == 12


async def test_not_json_and_not_a_bundle(scenario: Scenario) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    url = f"/api/patients/{pid}/fhir"
    resp = await clinic.client.post(
        url, data=b"<Bundle/>", headers={"X-CSRF-Token": clinic.csrf, "Content-Type": "text/plain"}
    )
    assert resp.status == 415
    # XML is FHIR's other form, but this one is not in FHIR's namespace.
    resp = await clinic.client.post(
        url, data=b"<Bundle/>", headers={"X-CSRF-Token": clinic.csrf, "Content-Type": "text/xml"}
    )
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_fhir")
    resp = await clinic.client.post(
        url,
        data=b"{not json",
        headers={"X-CSRF-Token": clinic.csrf, "Content-Type": "application/fhir+json"},
    )
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_json")
    status, data = await import_bundle(clinic, pid, [1, 2])
    assert (status, data["error"]["code"]) == (400, "invalid_fhir")


async def test_only_the_patients_clinic_imports_and_others_cannot_tell_it_exists(
    scenario: Scenario,
) -> None:
    clinic2, cardio = await scenario.user("clinic2"), await scenario.user("cardio1")
    pid = await scenario.patient()
    for who in (clinic2, cardio):
        status, data = await import_bundle(who, pid, sample_bundle())
        assert (status, data["error"]["code"]) == (404, "not_found")
        # Even an invalid Bundle is judged only after the patient.
        status, data = await import_bundle(who, pid, {"resourceType": "nope"})
        assert status == 404
    status, data = await import_bundle(clinic2, "0" * 32, sample_bundle())
    assert status == 404


async def test_who_may_read_the_summary(scenario: Scenario) -> None:
    users = {
        n: await scenario.user(n)
        for n in ("clinic1", "clinic2", "cardio1", "resp1", "coord1", "county1")
    }
    pid = await scenario.patient()
    status, _ = await import_bundle(users["clinic1"], pid, sample_bundle())
    assert status == 200
    url = f"/api/patients/{pid}/summary"
    # Before any consultation only the clinic sees the patient.
    for name in ("clinic2", "cardio1", "coord1", "county1"):
        status, data = await users[name].get(url)
        assert (status, data["error"]["code"]) == (404, "not_found"), name

    c = (await scenario.consultation()).json
    curl = f"/api/consultations/{c['id']}/summary"
    for name in ("clinic1", "cardio1", "coord1"):
        for path in (url, curl):
            status, data = await users[name].get(path)
            assert status == 200, (name, path, data)
            assert {x["code"] for x in data["summary"]["conditions"]} == {"I10", "E11.9"}
    for name in ("clinic2", "resp1", "county1"):
        for path in (url, curl):
            status, data = await users[name].get(path)
            assert status == 404, (name, path)
    # Another patient of the clinic stays hidden from the specialist.
    status, _ = await users["cardio1"].get(
        f"/api/patients/{await scenario.patient('陈阿姨')}/summary"
    )
    assert status == 404


async def test_imports_and_reads_are_audited(scenario: Scenario, app: Any) -> None:
    clinic, clinic2 = await scenario.user("clinic1"), await scenario.user("clinic2")
    pid = await scenario.patient()
    await import_bundle(clinic, pid, sample_bundle())
    await clinic.get(f"/api/patients/{pid}/summary")
    await clinic2.get(f"/api/patients/{pid}/summary")
    async with app[DB].read() as conn:
        rows = (
            await conn.execute(
                sa.select(audit_log.c.action, audit_log.c.object_id, audit_log.c.detail).where(
                    audit_log.c.object_type == "patient"
                )
            )
        ).all()
    actions = [(a, o) for a, o, _ in rows]
    assert ("summary.import", pid) in actions
    assert actions.count(("summary.read", pid)) >= 2
    assert ("patient.denied", pid) in actions
    detail = next(d for a, _, d in rows if a == "summary.import")
    assert detail["created"]["observations"] == 7
    # No patient data in the audit detail.
    assert "刘大爷" not in str(rows) and LIU_NID not in str(rows)
