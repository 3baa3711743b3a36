"""A consultation exports as a valid FHIR R4 Bundle that keeps every value of the record."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle

from records import store
from records.fhir_common import ADDENDUM_OF_EXTENSION, RESIDENT_ID_SYSTEM, SHA256_EXTENSION
from records.schema import audit_log, blobs, documents
from signaling.workflow.base import Actor
from web.keys import CLOCK, CONSULTATIONS, DB, DIRECTORY

from ..scenario import OPINION, Scenario
from .test_opinion import sha256_of
from .test_summary import LIU_NID, import_bundle, sample_bundle

CHAT = ("请把最近一次心电图对准摄像头", "好的，马上")


async def fetch_bundle(user: Any, consultation_id: str) -> tuple[int, Any]:
    resp = await user.client.get(f"/api/consultations/{consultation_id}/fhir")
    if resp.status != 200:
        return resp.status, await resp.json()
    assert resp.content_type == "application/fhir+json"
    return resp.status, await resp.json(content_type=None)


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def ext(element: dict[str, Any], url: str) -> Any:
    found = [e for e in element.get("extension", []) if e["url"] == url]
    assert len(found) == 1, element
    return found[0]


async def attach_document(app: Any, consultation: dict[str, Any], patient_id: str, by: str) -> str:
    data = b"%PDF-1.4 fake lab report"
    digest = hashlib.sha256(data).hexdigest()
    now = app[CLOCK].now()
    doc_id = store.new_id()

    def _write1(conn: Any) -> Any:
        conn.execute(
            blobs.insert().values(
                sha256=digest, size=len(data), media_type="application/pdf", stored_at=now
            )
        )
        conn.execute(
            documents.insert().values(
                id=doc_id,
                patient_id=patient_id,
                consultation_id=consultation["id"],
                sha256=digest,
                kind="pdf",
                media_type="application/pdf",
                filename="血常规.pdf",
                title="血常规报告",
                pages=1,
                meta={},
                uploaded_by=by,
                uploaded_at=now,
            )
        )

    await app[DB].run_write(_write1)
    return digest


def finished_recording(conn: Any, consultation_id: str, participant_id: str, now: Any) -> str:
    """A finished recording row (part 1) of a participant; its id."""
    rid = store.add_recording(
        conn,
        consultation_id=consultation_id,
        participant_id=participant_id,
        part=1,
        path=f"{consultation_id}/{participant_id}-1.webm",
        container="webm",
        video_codec="vp8",
        audio_codec="opus",
        started_at=now,
    )
    store.update_recording(
        conn,
        rid,
        status="finished",
        duration_ms=61_500,
        size=123_456,
        sha256="ab" * 32,
        finished_at=now + timedelta(seconds=62),
    )
    return str(rid)


async def add_recording(app: Any, consultation_id: str, participant_id: str) -> str:
    now = app[CLOCK].now()

    def _write2(conn: Any) -> Any:
        rid = finished_recording(conn, consultation_id, participant_id, now)
        # A failed leg has no file to point at.
        failed = store.add_recording(
            conn,
            consultation_id=consultation_id,
            participant_id=participant_id,
            part=2,
            path=f"{consultation_id}/{participant_id}-2.webm",
            container="webm",
            video_codec="vp8",
            audio_codec="opus",
            started_at=now,
        )
        store.update_recording(conn, failed, status="failed", error="no media")
        return rid

    return str(await app[DB].run_write(_write2))


async def full_consultation(scenario: Scenario, app: Any, clock: Any) -> dict[str, Any]:
    """Import, request, call with chat, a document and a recording, sign, add an addendum."""
    pid = await scenario.patient()
    status, _ = await import_bundle(await scenario.user("clinic1"), pid, sample_bundle())
    assert status == 200
    made = await scenario.consultation("accepted", urgency="urgent")
    clinic, cardio, c, url = made.clinic, made.specialist, made.json, made.url
    digest = await attach_document(app, c, pid, clinic.account["id"])
    clock.advance(60)
    status, _ = await clinic.post(url + "/start")
    assert status == 200
    for who, text in zip((cardio, clinic), CHAT, strict=True):
        account = await app[DIRECTORY].account(who.account["id"])
        assert account is not None
        clock.advance(5)
        await app[CONSULTATIONS].call_event(Actor(account=account), c["id"], "chat", {"text": text})
    rec_id = await add_recording(app, c["id"], cardio.account["id"])
    clock.advance(600)
    status, _ = await cardio.post(url + "/end")
    assert status == 200
    status, data = await cardio.post(url + "/opinion", OPINION)
    assert status == 201
    opinion = data["opinion"]
    status, data = await cardio.post(f"{url}/opinion/{opinion['id']}/addendum", {"text": "补充"})
    assert status == 201
    return {
        "clinic": clinic,
        "cardio": cardio,
        "id": c["id"],
        "url": url,
        "pid": pid,
        "digest": digest,
        "recording": rec_id,
        "opinion": opinion,
        "addendum": data["opinion"],
    }


async def test_export_validates_and_keeps_every_value(
    scenario: Scenario, app: Any, clock: Any
) -> None:
    f = await full_consultation(scenario, app, clock)
    clinic = f["clinic"]
    status, bundle = await fetch_bundle(clinic, f["id"])
    assert status == 200, bundle

    # The whole Bundle parses with fhir.resources (R4B, the R4-compatible package).
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "collection"
    counts = Counter(type(e.resource).__name__ for e in parsed.entry or [])
    assert counts == {
        "Patient": 1,
        "ServiceRequest": 1,
        "Encounter": 1,
        "Consent": 1,
        "Condition": 2,
        "MedicationStatement": 2,
        "AllergyIntolerance": 1,
        "Observation": 7,
        "DocumentReference": 1,
        "Communication": 2,
        "DiagnosticReport": 2,
        "Media": 1,
    }
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls)
    # Every reference inside the Bundle resolves to one of its entries.
    refs = _references(bundle)
    assert refs and refs <= set(urls)

    [patient] = resources(bundle, "Patient")
    assert patient["identifier"] == [{"system": RESIDENT_ID_SYSTEM, "value": LIU_NID}]
    assert patient["name"] == [{"text": "刘大爷"}]
    assert (patient["gender"], patient["birthDate"]) == ("male", "1951-03-14")

    [request] = resources(bundle, "ServiceRequest")
    assert request["priority"] == "urgent"
    assert request["status"] == "completed"
    assert request["reasonCode"] == [{"text": "胸闷两周，心电图ST段改变"}]
    assert request["note"] == [{"text": "是否需要转上级医院行冠脉造影？"}]
    assert request["requester"]["display"].startswith("王建国")
    assert request["performerType"]["text"] == "心血管内科"

    status, detail = await clinic.get(f["url"])
    events = {e["kind"]: e["at"] for e in detail["consultation"]["events"]}
    [encounter] = resources(bundle, "Encounter")
    assert encounter["class"]["code"] == "VR"
    assert encounter["status"] == "finished"
    assert encounter["period"] == {"start": events["live"], "end": events["ended"]}

    [consent] = resources(bundle, "Consent")
    assert consent["status"] == "active"
    assert consent["scope"]["coding"][0]["code"] == "treatment"
    assert consent["provision"]["provision"][0]["type"] == "permit"  # recording consented

    # The summary and the export say the same things.
    status, data = await clinic.get(f"/api/consultations/{f['id']}/summary")
    summary = data["summary"]
    conds = {c["code"]["coding"][0]["code"]: c for c in resources(bundle, "Condition")}
    assert set(conds) == {c["code"] for c in summary["conditions"]}
    for c in summary["conditions"]:
        coding = conds[c["code"]]["code"]["coding"][0]
        assert coding["system"] == "http://hl7.org/fhir/sid/icd-10"
        assert coding["display"] == c["display"]
        assert conds[c["code"]].get("onsetDateTime") == c["onset"]
    meds = {
        m["medicationCodeableConcept"]["text"]: m for m in resources(bundle, "MedicationStatement")
    }
    for m in summary["medications"]:
        assert meds[m["display"]]["dosage"] == [{"text": m["dosage"]}]
        assert meds[m["display"]]["status"] == m["status"]
    [allergy] = resources(bundle, "AllergyIntolerance")
    assert allergy["code"]["text"] == "青霉素"
    assert allergy["code"]["coding"][0]["code"] == "764146007"
    assert allergy["criticality"] == "high"
    assert allergy["reaction"] == [{"manifestation": [{"text": "皮疹"}]}]

    observations = {o["code"]["coding"][0]["code"]: o for o in resources(bundle, "Observation")}
    for item in summary["vitals"] + summary["labs"]:
        obs = observations[item["code"]]
        assert obs["code"]["coding"][0]["system"] == item["system"] == "http://loinc.org"
        assert obs["code"]["text"] == item["display"]
        assert obs["effectiveDateTime"] == item["effective_at"]
        if isinstance(item["value"], str):
            assert obs["valueString"] == item["value"]
            continue
        assert obs["valueQuantity"] == {"value": item["value"], "unit": item["unit"]}
        rng = obs.get("referenceRange", [{}])[0]
        assert (rng.get("low", {}).get("value"), rng.get("high", {}).get("value")) == (
            (item["range"]["low"], item["range"]["high"]) if item["range"] else (None, None)
        )
        flags = [c["code"] for i in obs.get("interpretation", []) for c in i["coding"]]
        assert flags == ([item["flag"]] if item["flag"] else [])
    glucose = observations["1558-6"]
    assert glucose["valueQuantity"] == {"value": 7.8, "unit": "mmol/L"}
    assert glucose["referenceRange"] == [
        {"low": {"value": 3.9, "unit": "mmol/L"}, "high": {"value": 6.1, "unit": "mmol/L"}}
    ]
    assert glucose["interpretation"][0]["coding"][0]["code"] == "H"
    assert observations["2823-3"]["interpretation"][0]["coding"][0]["code"] == "L"

    [doc] = resources(bundle, "DocumentReference")
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf"
    assert attachment["size"] == len(b"%PDF-1.4 fake lab report")
    # An absolute URL another system can follow (answered only after a login
    # by someone who may see the consultation).
    origin = str(clinic.client.make_url("/")).rstrip("/")
    assert attachment["url"] == f"{origin}/api/documents/{doc['id']}/content"
    assert ext(attachment, SHA256_EXTENSION)["valueString"] == f["digest"]
    assert "hash" not in attachment  # FHIR's hash is SHA-1; we do not fake one

    assert [c["payload"][0]["contentString"] for c in resources(bundle, "Communication")] == list(
        CHAT
    )

    reports = {r["id"]: r for r in resources(bundle, "DiagnosticReport")}
    report = reports[f["opinion"]["id"]]
    assert report["status"] == "appended"  # an addendum came later; the text did not change
    assert report["conclusion"] == OPINION["impression"]
    assert ext(report, SHA256_EXTENSION)["valueString"] == f["opinion"]["sha256"]
    text, signed = report["presentedForm"]
    assert OPINION["findings"] in base64.b64decode(text["data"]).decode()
    signed_bytes = base64.b64decode(signed["data"])
    assert hashlib.sha256(signed_bytes).hexdigest() == f["opinion"]["sha256"]
    assert base64.b64decode(signed["hash"]) == hashlib.sha1(signed_bytes).digest()  # noqa: S324
    assert f["opinion"]["sha256"] == sha256_of({**OPINION, "notes": None})
    addendum = reports[f["addendum"]["id"]]
    assert (addendum["status"], addendum["conclusion"]) == ("final", "补充")
    parent_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is report)
    assert ext(addendum, ADDENDUM_OF_EXTENSION)["valueReference"]["reference"] == parent_url

    [media] = resources(bundle, "Media")
    assert media["id"] == f["recording"]
    assert media["content"]["contentType"] == "video/webm"
    assert media["content"]["url"] == f"{origin}/api/recordings/{f['recording']}/content"
    assert media["content"]["size"] == 123_456
    assert media["duration"] == 61.5
    assert ext(media["content"], SHA256_EXTENSION)["valueString"] == "ab" * 32


def _references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                found.add(item)
            else:
                found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


async def test_a_referral_exports_as_a_second_service_request(scenario: Scenario) -> None:
    made = await scenario.consultation(
        "referred",
        urgency="emergency",
        referral={"reason": "需门诊行运动平板试验", "department": "心内科门诊"},
    )
    cardio, c, referral = made.specialist, made.json, made.opinion
    assert referral is not None
    status, bundle = await fetch_bundle(cardio, c["id"])
    assert status == 200
    parsed = Bundle.model_validate(bundle)
    counts = Counter(type(e.resource).__name__ for e in parsed.entry or [])
    assert counts["ServiceRequest"] == 2
    assert "DiagnosticReport" not in counts
    requests = {r["id"]: r for r in resources(bundle, "ServiceRequest")}
    assert requests[c["id"]]["priority"] == "stat"
    ref = requests[referral["id"]]
    assert ref["reasonCode"] == [{"text": "需门诊行运动平板试验"}]
    assert ref["performerType"] == {"text": "心内科门诊"}
    assert ext(ref, SHA256_EXTENSION)["valueString"] == referral["sha256"]
    # Nothing was imported for this patient: the summary parts are simply absent.
    assert "Condition" not in counts and "Observation" not in counts


async def test_an_early_export_is_valid_too(scenario: Scenario) -> None:
    c = await scenario.consultation(patient="陈阿姨")
    status, bundle = await fetch_bundle(c.clinic, c.id)
    assert status == 200
    Bundle.model_validate(bundle)
    [encounter] = resources(bundle, "Encounter")
    assert encounter["status"] == "planned" and "period" not in encounter
    assert resources(bundle, "Consent") == []  # 陈阿姨 has not consented yet


async def test_only_those_who_see_the_consultation_export_it(scenario: Scenario, app: Any) -> None:
    c = (await scenario.consultation()).json
    users = {
        n: await scenario.user(n) for n in ("clinic1", "clinic2", "cardio1", "resp1", "coord1")
    }
    for name in ("clinic1", "cardio1", "coord1"):
        status, _ = await fetch_bundle(users[name], c["id"])
        assert status == 200, name
    for name in ("clinic2", "resp1"):
        status, data = await fetch_bundle(users[name], c["id"])
        assert (status, data["error"]["code"]) == (404, "not_found"), name
    status, _ = await fetch_bundle(users["clinic1"], "f" * 32)
    assert status == 404
    async with app[DB].read() as conn:
        rows = (
            await conn.execute(
                sa.select(audit_log.c.action, audit_log.c.object_id).where(
                    audit_log.c.object_id == c["id"]
                )
            )
        ).all()
    actions = [a for a, _ in rows]
    assert actions.count("consultation.export") == 3
    assert actions.count("consultation.denied") == 2
