"""Issue 14: FHIR R4 Bundles as they are published, imported as published.

The Bundles under ``tests/data/fhir`` were written by others (Synthea patients as
SMART Health IT serves them, the HL7 International Patient Summary examples; see
the README there). Each imports without a change; what the summary shows per kind
equals a count made here, independently, of the Bundle's entries that may be shown
(neither withdrawn nor a "none known / no information" placeholder); every
Synthea result appears with its value, unit and time.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from records.fhir_in_rows import NONE_KNOWN_SNOMED, parse_datetime
from records.schema import (
    allergies,
    conditions,
    immunizations,
    medications,
    observations,
    procedures,
)
from web.keys import DB
from web.settings import Settings

from ..conftest import make_settings
from ..scenario import Scenario

DATA = Path(__file__).parent.parent / "data" / "fhir"
SYNTHEA = ["synthea-clemente-kreiger", "synthea-buster-hoeger", "synthea-kathe-zieme"]
IPS = [
    "ips-IPS-examples-Bundle-01",
    "ips-IPS-examples-Bundle-with-immunization",
    "ips-bundle-minimal",
    "ips-bundle-no-info-required-sections",
]
WITHDRAWN = {
    "Condition": {"entered-in-error", "refuted"},
    "AllergyIntolerance": {"entered-in-error", "refuted"},
    "Medication": {"entered-in-error", "not-taken", "cancelled", "draft"},
    "Observation": {"entered-in-error", "cancelled"},
    "Immunization": {"entered-in-error", "not-done"},
    "Procedure": {"entered-in-error", "not-done"},
}
IPS_ABSENT = "http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return data


def _placeholder(concept: dict[str, Any]) -> bool:
    return any(
        c.get("system") == IPS_ABSENT
        or (c.get("system") == "http://snomed.info/sct" and c.get("code") in NONE_KNOWN_SNOMED)
        for c in concept.get("coding", [])
    )


def _verification(res: dict[str, Any]) -> str | None:
    coding = res.get("verificationStatus", {}).get("coding", [{}])
    return coding[0].get("code")


def expected_counts(bundle: dict[str, Any]) -> dict[str, int]:
    """What the summary should list per kind, counted straight from the Bundle."""
    counts = {
        "conditions": 0,
        "medications": 0,
        "allergies": 0,
        "observations": 0,
        "immunizations": 0,
        "procedures": 0,
    }
    for entry in bundle.get("entry", []):
        res = entry["resource"]
        kind = res["resourceType"]
        if kind == "Condition":
            if not _placeholder(res["code"]) and _verification(res) not in WITHDRAWN[kind]:
                counts["conditions"] += 1
        elif kind == "AllergyIntolerance":
            if not _placeholder(res["code"]) and _verification(res) not in WITHDRAWN[kind]:
                counts["allergies"] += 1
        elif kind in ("MedicationStatement", "MedicationRequest"):
            concept = res.get("medicationCodeableConcept", {})
            if not _placeholder(concept) and res["status"] not in WITHDRAWN["Medication"]:
                counts["medications"] += 1
        elif kind == "Immunization":
            if not _placeholder(res["vaccineCode"]) and res["status"] not in WITHDRAWN[kind]:
                counts["immunizations"] += 1
        elif kind == "Procedure":
            if not _placeholder(res["code"]) and res["status"] not in WITHDRAWN[kind]:
                counts["procedures"] += 1
        elif kind == "Observation" and res["status"] not in WITHDRAWN[kind]:
            if any(key.startswith("value") for key in res):
                counts["observations"] += 1
            else:
                counts["observations"] += sum(
                    any(key.startswith("value") for key in c) for c in res.get("component", [])
                )
    return counts


def shown_counts(summary: dict[str, Any]) -> dict[str, int]:
    return {
        "conditions": len(summary["conditions"]),
        "medications": len(summary["medications"]),
        "allergies": len(summary["allergies"]),
        "observations": len(summary["vitals"]) + len(summary["labs"]) + len(summary["other"]),
        "immunizations": len(summary["immunizations"]),
        "procedures": len(summary["procedures"]),
    }


async def stored(app: Any) -> int:
    async with app[DB].read() as conn:
        total = 0
        for table in (conditions, medications, allergies, observations, immunizations, procedures):
            total += (
                await conn.execute(sa.select(sa.func.count()).select_from(table))
            ).scalar_one()
        return int(total)


async def post_bundle(clinic: Any, pid: str, bundle: dict[str, Any]) -> tuple[int, Any]:
    resp = await clinic.client.post(
        f"/api/patients/{pid}/fhir",
        data=io.BytesIO(json.dumps(bundle).encode()),
        headers={"X-CSRF-Token": clinic.csrf, "Content-Type": "application/fhir+json"},
    )
    return resp.status, await resp.json()


@pytest.mark.parametrize("name", SYNTHEA + IPS)
async def test_published_bundles_import_as_published(scenario: Scenario, name: str) -> None:
    bundle = load(name)
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await post_bundle(clinic, pid, bundle)
    assert status == 200, data
    imported = data["imported"]
    assert imported["left_out"] == [], imported["left_out"][:5]
    assert imported["bundle_type"] == bundle["type"]
    assert shown_counts(data["summary"]) == expected_counts(bundle)
    # Everything the summary does not use is accounted for, by type.
    read = {"Patient", "Condition", "AllergyIntolerance", "Observation", "DiagnosticReport"}
    read |= {"MedicationStatement", "MedicationRequest", "Medication", "Immunization", "Procedure"}
    unused: dict[str, int] = {}
    for entry in bundle["entry"]:
        kind = entry["resource"]["resourceType"]
        if kind not in read:
            unused[kind] = unused.get(kind, 0) + 1
    assert imported["not_used"] == unused


async def test_synthea_results_keep_value_unit_and_time(scenario: Scenario) -> None:
    bundle = load("synthea-kathe-zieme")
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await post_bundle(clinic, pid, bundle)
    assert status == 200, data
    s = data["summary"]
    rows = {o["source"]: o for o in s["vitals"] + s["labs"] + s["other"]}
    checked = 0
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] != "Observation":
            continue
        parts = [(f"Observation/{res['id']}", res)]
        if "component" in res and not any(k.startswith("value") for k in res):
            parts = [
                (f"Observation/{res['id']}#{c['code']['coding'][0]['code']}", c)
                for c in res["component"]
            ]
        for source, part in parts:
            row = rows[source]
            if "valueQuantity" in part:
                assert row["value"] == pytest.approx(part["valueQuantity"]["value"])
                assert row["unit"] == part["valueQuantity"]["unit"]
            when = datetime.fromisoformat(row["effective_at"])
            assert when == parse_datetime(res["effectiveDateTime"])
            checked += 1
    assert checked == len(rows) > 100


@pytest.mark.parametrize("bundle_type", ["batch", "collection", "searchset"])
async def test_every_bundle_type_is_read(scenario: Scenario, bundle_type: str) -> None:
    bundle = copy.deepcopy(load("synthea-buster-hoeger"))
    bundle["type"] = bundle_type
    if bundle_type != "batch":
        for entry in bundle["entry"]:
            del entry["request"]
            if bundle_type == "searchset":
                entry["search"] = {"mode": "match"}
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await post_bundle(clinic, pid, bundle)
    assert status == 200, data
    assert data["imported"]["left_out"] == []
    assert shown_counts(data["summary"]) == expected_counts(bundle)


async def test_medication_references_are_resolved_within_the_bundle(scenario: Scenario) -> None:
    bundle = load("ips-IPS-examples-Bundle-01")
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await post_bundle(clinic, pid, bundle)
    assert status == 200, data
    names = {m["display"] for m in data["summary"]["medications"]}
    medications_in_bundle = {
        e["resource"]["code"].get("text") or e["resource"]["code"]["coding"][0]["display"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Medication"
    }
    assert names == medications_in_bundle and len(names) == 2
    # "No known food allergy" is not an allergy: it is reported, not listed.
    assert [a["display"] for a in data["summary"]["allergies"]] != []
    assert all("No known" not in a["display"] for a in data["summary"]["allergies"])
    assert data["imported"]["no_information"] == {
        "allergies": ["No known food allergy (situation)"]
    }


async def test_reimporting_a_published_bundle_updates_instead_of_duplicating(
    scenario: Scenario, app: Any
) -> None:
    bundle = load("synthea-kathe-zieme")
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, first = await post_bundle(clinic, pid, bundle)
    assert status == 200
    rows = await stored(app)
    assert rows == sum(first["imported"]["created"].values())
    status, again = await post_bundle(clinic, pid, bundle)
    assert status == 200
    assert again["imported"]["created"] == {}
    assert again["imported"]["updated"] == first["imported"]["created"]
    assert await stored(app) == rows
    assert shown_counts(again["summary"]) == shown_counts(first["summary"])


class TestSizeLimit:
    @pytest.fixture
    def settings(self, tmp_path: Path, demo_database: str) -> Settings:
        # Between the two Synthea patients as sent here (compact JSON).
        return make_settings(tmp_path, database_url=demo_database, fhir_import_max_bytes=400_000)

    async def test_a_body_over_the_configured_size_is_413(self, scenario: Scenario) -> None:
        bundle = load("synthea-kathe-zieme")
        clinic = await scenario.user("clinic1")
        pid = await scenario.patient()
        status, data = await post_bundle(clinic, pid, bundle)
        assert (status, data["error"]["code"]) == (413, "too_large")
        status, data = await post_bundle(clinic, pid, load("synthea-buster-hoeger"))
        assert status == 200, data

    async def test_a_chunked_body_is_cut_off_at_the_configured_size(
        self, scenario: Scenario
    ) -> None:
        raw = json.dumps(load("synthea-kathe-zieme")).encode()

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read as it comes
            for start in range(0, len(raw), 64 * 1024):
                yield raw[start : start + 64 * 1024]

        clinic = await scenario.user("clinic1")
        pid = await scenario.patient()
        resp = await clinic.client.post(
            f"/api/patients/{pid}/fhir",
            data=chunks(),
            headers={"X-CSRF-Token": clinic.csrf, "Content-Type": "application/fhir+json"},
        )
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "too_large"


async def test_the_default_size_takes_a_bundle_over_one_mebibyte(scenario: Scenario) -> None:
    raw = (DATA / "synthea-kathe-zieme.json").read_bytes()
    assert len(raw) > 1024 * 1024  # the API's usual body limit
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    resp = await clinic.client.post(
        f"/api/patients/{pid}/fhir",
        data=io.BytesIO(raw),
        headers={"X-CSRF-Token": clinic.csrf, "Content-Type": "application/fhir+json"},
    )
    assert resp.status == 200, await resp.text()


async def post_xml(clinic: Any, pid: str, raw: bytes) -> tuple[int, Any]:
    resp = await clinic.client.post(
        f"/api/patients/{pid}/fhir",
        data=io.BytesIO(raw),
        headers={"X-CSRF-Token": clinic.csrf, "Content-Type": "application/fhir+xml"},
    )
    return resp.status, await resp.json()


async def test_the_published_xml_form_imports_like_the_json(scenario: Scenario) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    raw = (DATA / "ips-IPS-examples-Bundle-01.xml").read_bytes()
    status, data = await post_xml(clinic, pid, raw)
    assert status == 200, data
    assert data["imported"]["left_out"] == []
    assert data["imported"]["bundle_type"] == "document"
    json_form = load("ips-IPS-examples-Bundle-01")
    assert shown_counts(data["summary"]) == expected_counts(json_form)
    names = sorted(m["display"] for m in data["summary"]["medications"])
    assert len(names) == 2


async def test_an_invalid_resource_in_xml_is_reported_by_path(scenario: Scenario) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    raw = (DATA / "ips-IPS-examples-Bundle-01.xml").read_bytes()
    # An Observation's time that is no date: that one resource is left out.
    broken = raw.replace(
        b'<effectiveDateTime value="2015-10-10"/>', b'<effectiveDateTime value="soon"/>', 1
    )
    assert broken != raw
    status, data = await post_xml(clinic, pid, broken)
    assert status == 200, data
    [problem] = {p["path"].split(".resource")[0] for p in data["imported"]["left_out"]}
    assert problem.startswith("entry[")
    assert shown_counts(data["summary"])["conditions"] == 2


async def test_xml_entities_are_not_expanded(scenario: Scenario, app: Any) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY c "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY d SYSTEM "file:///etc/passwd">]>'
        b'<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/>'
        b'<entry><resource><Patient><id value="p"/><name><text value="&c;&d;"/></name>'
        b"</Patient></resource></entry></Bundle>"
    )
    status, data = await post_xml(clinic, pid, bomb)
    assert status in (200, 400), data
    assert "root:" not in json_text(data)
    assert await stored(app) == 0


def json_text(data: Any) -> str:
    return json.dumps(data)
