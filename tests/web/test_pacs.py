"""Studies from a real regional PACS: Orthanc with DICOMweb, started by this module.

Orthanc asks for HTTP basic credentials like a real PACS. The sample studies of
tests/data/dicom are loaded through its REST API with the test patient's
resident ID as their Patient ID, plus one study of someone else.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pydicom
import pytest
import sqlalchemy as sa

from records.schema import audit_log, consultation_events, patients
from web.keys import DB, PACS
from web.settings import Secret, Settings, SettingsError

from ..conftest import make_settings
from ..orthanc import PASSWORD, USER, Orthanc, orthanc_or_skip, sample
from ..scenario import Scenario

PHANTOM_STUDY = "1.2.826.0.1.3680043.8.498.7319.1"
CT_STUDY = "1.2.826.0.1.3680043.8.498.7319.11"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    orthanc_or_skip()
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(tmp_path: Path, demo_database: str, orthanc: Orthanc) -> Settings:
    return make_settings(
        tmp_path,
        database_url=demo_database,
        pacs_url=orthanc.dicomweb_url,
        pacs_username=USER,
        pacs_password=Secret(PASSWORD),
        pacs_timeout_seconds=10.0,
    )


async def national_id(app: Any, patient_id: str) -> str:
    async with app[DB].read() as conn:
        row = (
            await conn.execute(sa.select(patients.c.national_id).where(patients.c.id == patient_id))
        ).one()
    return str(row.national_id)


async def load_studies(app: Any, orthanc: Orthanc, patient_id: str) -> str:
    """The patient's two studies (and a stranger's) on the PACS; the patient's ID."""
    nid = await national_id(app, patient_id)
    orthanc.upload(sample("phantom_mr_16frames.dcm", PatientID=nid))
    orthanc.upload(sample("CT_small.dcm", PatientID=nid))
    # A CT series of three instances, sent slice by slice in reverse order.
    for n in (3, 1, 2):
        orthanc.upload(sample(f"phantom_ct_slice{n}.dcm", PatientID=nid))
    orthanc.upload(sample("MR_small.dcm", PatientID="110101199001011234"))
    return nid


async def test_the_clinic_finds_the_patients_studies_only(
    scenario: Scenario, app: Any, orthanc: Orthanc
) -> None:
    clinic = await scenario.user("clinic1")
    c = await scenario.consultation()
    await load_studies(app, orthanc, c.patient_id)

    status, body = await clinic.get(f"{c.url}/pacs/studies")
    assert status == 200, body
    studies = {s["study_uid"]: s for s in body["studies"]}
    phantom = studies[PHANTOM_STUDY]
    assert phantom["matched_by"] == "id"
    assert phantom["date"] == "2026-11-18"
    assert phantom["modalities"] == ["MR"]
    assert phantom["description"] == "Brain MR (phantom)"
    assert (phantom["series"], phantom["instances"]) == (1, 1)
    ct = studies[CT_STUDY]
    assert (ct["modalities"], ct["series"], ct["instances"]) == (["CT"], 1, 3)
    # The stranger's MR is not listed; the other CT is (newest first).
    assert len(studies) == 3
    assert [s["date"] for s in body["studies"]] == ["2026-11-20", "2026-11-18", "2004-01-19"]
    # No patient identity goes back to the browser from the PACS.
    assert "patient" not in json.dumps(body).lower()


async def test_attach_stores_the_study_deidentified_and_the_specialist_scrolls_it(
    scenario: Scenario, app: Any, orthanc: Orthanc
) -> None:
    clinic = await scenario.user("clinic1")
    c = await scenario.consultation("accepted")
    nid = await load_studies(app, orthanc, c.patient_id)

    status, body = await clinic.post(f"{c.url}/pacs/attach", {"study_uid": PHANTOM_STUDY})
    assert status == 201, body
    [doc] = body["documents"]
    assert doc["kind"] == "dicom"
    assert doc["meta"]["frames"] == 16
    assert doc["meta"]["source"]["study_uid"] == PHANTOM_STUDY
    assert doc["title"] == "MR · T2 axial · 2026-11-18"

    # Attaching again stores nothing twice.
    status, again = await clinic.post(f"{c.url}/pacs/attach", {"study_uid": PHANTOM_STUDY})
    assert (status, again["documents"]) == (201, [])

    # The specialist of the consultation sees it, de-identified, and scrolls it.
    specialist = c.specialist
    status, listed = await specialist.get(f"{c.url}/documents")
    assert [d["id"] for d in listed["documents"]] == [doc["id"]]
    resp = await specialist.client.get(doc["content_url"])
    stored = pydicom.dcmread(io.BytesIO(await resp.read()))
    assert stored.PatientID == "" and nid not in str(stored.PatientName)
    assert stored.PatientIdentityRemoved == "YES"
    seen = []
    for index in (0, 7, 15):
        resp = await specialist.client.get(
            doc["content_url"].replace("/content", "/frame"), params={"index": str(index)}
        )
        assert resp.status == 200
        frame = json.loads(resp.headers["X-Frame"])
        assert (frame["index"], frame["frames"], frame["rows"], frame["columns"]) == (
            index,
            16,
            128,
            128,
        )
        assert (frame["center"], frame["width"]) == (1000.0, 2000.0)
        data = await resp.read()
        assert len(data) == 128 * 128 * 4
        # The marks along the top edge count the frame: index + 1 bright marks.
        row = struct.unpack_from("<128f", data, 6 * 128 * 4)
        marks = sum(1 for x in range(4, 128, 7) if row[x + 2] == 2000.0)
        seen.append(marks)
    assert seen == [1, 8, 16]
    resp = await specialist.client.get(
        doc["content_url"].replace("/content", "/frame"), params={"index": "16"}
    )
    assert resp.status == 404

    # Audited, and on the timeline.
    async with app[DB].read() as conn:
        actions = [
            r.action
            for r in await conn.execute(
                sa.select(audit_log.c.action).where(audit_log.c.action.like("pacs.%"))
            )
        ]
        kinds = [
            r.kind
            for r in await conn.execute(
                sa.select(consultation_events.c.kind).where(
                    consultation_events.c.consultation_id == c.id
                )
            )
        ]
    assert actions == ["pacs.attach", "pacs.attach"]
    assert "document_shared" in kinds


async def test_two_attaches_at_once_store_the_study_once(
    scenario: Scenario, app: Any, orthanc: Orthanc
) -> None:
    clinic = await scenario.user("clinic1")
    c = await scenario.consultation("accepted")
    await load_studies(app, orthanc, c.patient_id)
    answers = await asyncio.gather(
        clinic.post(f"{c.url}/pacs/attach", {"study_uid": CT_STUDY}),
        clinic.post(f"{c.url}/pacs/attach", {"study_uid": CT_STUDY}),
    )
    assert sorted(len(body["documents"]) for _status, body in answers) == [0, 3]
    status, listed = await clinic.get(f"{c.url}/documents")
    assert (status, len(listed["documents"])) == (200, 3)


async def test_a_series_of_instances_is_attached_in_order(
    scenario: Scenario, app: Any, orthanc: Orthanc
) -> None:
    clinic = await scenario.user("clinic1")
    c = await scenario.consultation("accepted")
    await load_studies(app, orthanc, c.patient_id)
    status, body = await clinic.post(f"{c.url}/pacs/attach", {"study_uid": CT_STUDY})
    assert status == 201, body
    docs = body["documents"]
    assert [d["meta"]["source"]["instance_number"] for d in docs] == [1, 2, 3]
    assert {d["title"] for d in docs} == {"CT · Axial 5 mm · 2026-11-20"}
    assert len({d["meta"]["source"]["series_uid"] for d in docs}) == 1
    # Each slice in Hounsfield units: the lungs at -800 shrink from slice to slice.
    lungs = []
    for doc in docs:
        resp = await c.specialist.client.get(f"/api/documents/{doc['id']}/frame")
        frame = json.loads(resp.headers["X-Frame"])
        assert (frame["center"], frame["width"], frame["low"]) == (40, 400, -1000)
        values = struct.unpack(f"<{64 * 64}f", await resp.read())
        lungs.append(sum(1 for v in values if v == -800))
    assert lungs[0] > lungs[1] > lungs[2] > 0


async def test_a_patient_filed_under_another_id_is_found_by_name_and_birth_date(
    scenario: Scenario, orthanc: Orthanc
) -> None:
    clinic = await scenario.user("clinic1")
    c = await scenario.consultation(patient="陈阿姨", consent=("consultation",))

    # The imaging centre files her under its own record number; a namesake too.
    def chinese(name: str, **tags: str) -> bytes:
        # The character set first: the name is encoded with it.
        return sample(name, fresh=True, SpecificCharacterSet="ISO_IR 192", **tags)

    mine = chinese(
        "MR_small.dcm", PatientID="H-123", PatientName="陈阿姨", PatientBirthDate="19621102"
    )
    namesake = chinese(
        "CT_small.dcm", PatientID="H-999", PatientName="陈阿姨", PatientBirthDate="19700101"
    )
    # Born the same day, another name.
    neighbour = chinese(
        "phantom_ct_slice1.dcm",
        PatientID="H-555",
        PatientName="王阿姨",
        PatientBirthDate="19621102",
    )
    for data in (mine, namesake, neighbour):
        orthanc.upload(data)
    status, body = await clinic.get(f"{c.url}/pacs/studies")
    assert status == 200, body
    [study] = body["studies"]
    assert study["study_uid"] == str(pydicom.dcmread(io.BytesIO(mine)).StudyInstanceUID)
    assert study["matched_by"] == "name_birth_date"
    status, body = await clinic.post(f"{c.url}/pacs/attach", {"study_uid": study["study_uid"]})
    assert status == 201, body
    assert len(body["documents"]) == 1
    namesake_uid = str(pydicom.dcmread(io.BytesIO(namesake)).StudyInstanceUID)
    status, body = await clinic.post(f"{c.url}/pacs/attach", {"study_uid": namesake_uid})
    assert status == 404


async def test_studies_the_pacs_cannot_transcode_are_attached_as_stored_and_shown(
    scenario: Scenario, app: Any, orthanc: Orthanc
) -> None:
    clinic = await scenario.user("clinic1")
    c = await scenario.consultation(patient="小明", consent=("consultation",))
    nid = await national_id(app, c.patient_id)
    # Orthanc cannot transcode these to explicit VR little endian (it answers
    # 500): they are retrieved as stored.
    rle = sample("MR_small_RLE.dcm", fresh=True, PatientID=nid)
    j2k = sample("MR_small_jp2klossless.dcm", fresh=True, PatientID=nid)
    found = {}
    for data in (rle, j2k):
        orthanc.upload(data)
        found[str(pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID)] = str(
            pydicom.dcmread(io.BytesIO(data)).StudyInstanceUID
        )
    statuses = {}
    for syntax, study_uid in found.items():
        status, body = await clinic.post(f"{c.url}/pacs/attach", {"study_uid": study_uid})
        assert status == 201, body
        [doc] = body["documents"]
        resp = await clinic.client.get(f"/api/documents/{doc['id']}/frame")
        statuses[syntax] = resp.status
    # RLE is decoded by pydicom itself, JPEG 2000 through Pillow's OpenJPEG.
    assert statuses == {"1.2.840.10008.1.2.5": 200, "1.2.840.10008.1.2.4.90": 200}


async def test_only_the_patients_clinic_searches_and_attaches(
    scenario: Scenario, app: Any, orthanc: Orthanc
) -> None:
    c = await scenario.consultation("accepted")
    await load_studies(app, orthanc, c.patient_id)
    for username in ("clinic2", "cardio1", "resp1", "coord1"):
        user = await scenario.user(username)
        status, body = await user.get(f"{c.url}/pacs/studies")
        assert status == 404, (username, body)
        status, body = await user.post(f"{c.url}/pacs/attach", {"study_uid": PHANTOM_STUDY})
        assert status == 404, (username, body)
    # A study of another patient is not found for this one.
    clinic = await scenario.user("clinic1")
    stranger = pydicom.dcmread(Path(__file__).parents[1] / "data" / "dicom" / "MR_small.dcm")
    status, body = await clinic.post(
        f"{c.url}/pacs/attach", {"study_uid": str(stranger.StudyInstanceUID)}
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await clinic.post(f"{c.url}/pacs/attach", {"study_uid": "../../studies"})
    assert (status, body["error"]["fields"]) == (400, ["study_uid"])


async def test_pacs_failures_have_codes(
    scenario: Scenario, app: Any, orthanc: Orthanc, tmp_path: Path
) -> None:
    clinic = await scenario.user("clinic1")
    c = await scenario.consultation()
    port = app[PACS].port

    # Wrong credentials: the PACS answers 401.
    port.headers = {"Authorization": aiohttp.encode_basic_auth(USER, "wrong")}
    await port.close()
    port._session = None
    status, body = await clinic.get(f"{c.url}/pacs/studies")
    assert (status, body["error"]["code"]) == (502, "pacs_refused")

    # Nobody listens: unreachable.
    port.base_url = "http://127.0.0.1:9/dicom-web/"
    status, body = await clinic.get(f"{c.url}/pacs/studies")
    assert (status, body["error"]["code"]) == (502, "pacs_unreachable")

    # Accepts the connection and never answers: a timeout.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    mute = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port.base_url = f"http://127.0.0.1:{mute.sockets[0].getsockname()[1]}/dicom-web/"
        port.timeout = aiohttp.ClientTimeout(total=0.5)
        await port.close()
        port._session = None
        status, body = await clinic.get(f"{c.url}/pacs/studies")
        assert (status, body["error"]["code"]) == (504, "pacs_timeout")
        await port.close()
    finally:
        mute.close()
        await mute.wait_closed()

    # Not configured at all.
    app[PACS].port = None
    status, body = await clinic.get(f"{c.url}/pacs/studies")
    assert (status, body["error"]["code"]) == (503, "pacs_not_configured")
    app[PACS].port = port


def test_pacs_settings_are_checked_and_the_password_never_shown(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="pacs_url"):
        make_settings(tmp_path, pacs_url="pacs.example.org/dicom-web")
    with pytest.raises(SettingsError, match="pacs_timeout_seconds"):
        make_settings(
            tmp_path, pacs_url="https://pacs.example.org/dicom-web/", pacs_timeout_seconds=0
        )
    settings = Settings.from_env(
        {
            "TELECONSULT_PACS_URL": "https://pacs.example.org/dicom-web/",
            "TELECONSULT_PACS_USERNAME": "county",
            "TELECONSULT_PACS_PASSWORD": "s3cret-pacs",
            "TELECONSULT_PACS_TIMEOUT_SECONDS": "7.5",
        },
        data_dir=tmp_path,
    )
    assert settings.pacs_timeout_seconds == 7.5
    assert str(settings.pacs_password) == "s3cret-pacs"
    assert "s3cret-pacs" not in repr(settings)
