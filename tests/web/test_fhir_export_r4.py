"""Issue 14, part 4: the export passes the R4 invariants and comes back in.

``tests/fhir_invariants.py`` runs every constraint of the FHIR 4.0.1
StructureDefinitions (``ait-1``, ``con-5``, ``obs-6``, ``ref-1``, ``bdl-7``, ...)
through an independent FHIRPath engine; ``fhir.resources`` alone checks none of
them. The product imports its own export (a round trip) with nothing left out.
"""

from __future__ import annotations

from typing import Any

from ..fhir_invariants import violations
from ..scenario import Scenario
from .test_fhir import fetch_bundle, full_consultation, resources
from .test_fhir_samples import load, post_bundle, shown_counts
from .test_summary_status import (
    _bundle,
    allergy,
    condition,
    glucose,
    immunization,
    medication,
    procedure,
)


async def test_the_checker_catches_what_fhir_resources_lets_through() -> None:
    # An allergy without a clinical status (what the export wrote before): ait-1.
    res = allergy("confirmed", None)
    res["id"] = "a"
    assert [v.key for v in violations(res)] == ["ait-1"]
    # An entered-in-error Condition that still says "active": con-5.
    assert [v.key for v in violations(condition("entered-in-error", "active"))] == ["con-5"]
    # A value and a data-absent reason together: obs-6.
    obs = glucose("final")
    obs["dataAbsentReason"] = {"text": "not measured"}
    assert [v.key for v in violations(obs)] == ["obs-6"]


async def test_published_bundles_pass_the_checker() -> None:
    for name in ("ips-IPS-examples-Bundle-01", "synthea-clemente-kreiger"):
        assert violations(load(name)) == [], name


async def test_the_full_export_passes_the_r4_invariants(
    scenario: Scenario, app: Any, clock: Any
) -> None:
    f = await full_consultation(scenario, app, clock)
    # Withdrawn and other statuses are in the summary too.
    status, _ = await post_bundle(
        f["clinic"],
        f["pid"],
        _bundle(
            condition("entered-in-error", None),
            allergy("refuted"),
            medication("MedicationRequest", "cancelled"),
            glucose("entered-in-error"),
            immunization("completed"),
            procedure("not-done"),
        ),
    )
    assert status == 200
    status, bundle = await fetch_bundle(f["clinic"], f["id"])
    assert status == 200, bundle
    found = violations(bundle)
    assert found == [], found[:10]
    statuses = {r["id"]: r.get("status") for r in resources(bundle, "Observation")}
    assert "entered-in-error" in statuses.values() and "final" in statuses.values()


async def test_the_export_round_trips(scenario: Scenario, app: Any, clock: Any) -> None:
    f = await full_consultation(scenario, app, clock)
    clinic = f["clinic"]
    status, bundle = await fetch_bundle(clinic, f["id"])
    assert status == 200
    status, before = await clinic.get(f"/api/patients/{f['pid']}/summary")
    assert status == 200
    # The export's Patient is 刘大爷 by his resident ID: it goes back into his own
    # record, each row recognised by its id (updated, not copied).
    status, data = await post_bundle(clinic, f["pid"], bundle)
    assert status == 200, data
    imported = data["imported"]
    assert imported["left_out"] == [], imported["left_out"][:5]
    assert imported["created"] == {}
    assert sum(imported["updated"].values()) == sum(shown_counts(before["summary"]).values())
    assert shown_counts(data["summary"]) == shown_counts(before["summary"])
    # Same values, codes and statuses as before.
    for section in ("conditions", "medications", "allergies", "vitals", "labs"):
        key = lambda r: (r.get("code") or "", r["display"])  # noqa: E731
        old = sorted(before["summary"][section], key=key)
        new = sorted(data["summary"][section], key=key)
        strip = lambda r: {k: v for k, v in r.items() if k not in ("id", "source")}  # noqa: E731
        if section == "allergies":
            # ait-1: an allergy imported without a clinical status goes out (and
            # so comes back) as active, as the summary showed it.
            old = [{**r, "clinical_status": r["clinical_status"] or "active"} for r in old]
        assert [strip(r) for r in new] == [strip(r) for r in old], section
    assert "Patient" not in imported["not_used"]


async def test_the_document_export_is_a_consult_note_that_passes_and_round_trips(
    scenario: Scenario, app: Any, clock: Any
) -> None:
    f = await full_consultation(scenario, app, clock)
    clinic = f["clinic"]
    resp = await clinic.client.get(f"/api/consultations/{f['id']}/fhir?type=document")
    assert resp.status == 200
    bundle = await resp.json(content_type=None)
    assert bundle["type"] == "document"
    found = violations(bundle)  # bdl-9/10/11 (identifier, timestamp, Composition first) too
    assert found == [], found[:10]
    composition = bundle["entry"][0]["resource"]
    assert composition["resourceType"] == "Composition"
    assert composition["type"]["coding"][0]["code"] == "11488-4"
    assert composition["status"] == "final"
    # Every other entry is the note's subject, its encounter, or listed in a
    # section, once.
    listed = [r["reference"] for s in composition["section"] for r in s["entry"]]
    others = [composition["subject"]["reference"], composition["encounter"]["reference"]]
    assert sorted(listed + others) == sorted(e["fullUrl"] for e in bundle["entry"][1:])
    assert len(set(listed)) == len(listed)
    status, data = await post_bundle(clinic, f["pid"], bundle)
    assert status == 200, data
    assert data["imported"]["left_out"] == []
    assert data["imported"]["created"] == {}
    assert data["imported"]["not_used"]["Composition"] == 1
    resp = await clinic.client.get(f"/api/consultations/{f['id']}/fhir?type=pdf")
    assert resp.status == 400
    assert (await resp.json())["error"]["fields"] == ["type"]
