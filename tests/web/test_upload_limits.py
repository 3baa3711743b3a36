"""Hostile uploads through the real API: decompression bombs, files that only start
right, identities inside DICOM files, and the national ID in the FHIR export.

The server runs in this test process, so the process's peak resident memory
(``VmHWM``, reset before each upload through ``/proc/self/clear_refs``) is the
server's: parsing runs in a limited child process and must not show up in it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import sqlalchemy as sa

from records.fhir_common import RESIDENT_ID_SYSTEM
from records.schema import documents, patients
from web.keys import DB
from web.settings import Settings

from ..conftest import make_settings
from ..records.bombs import (
    MiB,
    deflated_dicom,
    dicom_without_data_set,
    huge_header_dicom,
    pdf_without_pages,
    png,
    rle_dicom,
)
from ..records.samples import DICOM_PATIENT, dicom
from ..scenario import Scenario
from .test_documents import count, post_file, upload

# A small memory limit for the parsing child: enough to read a header, not to
# decode an 8192 x 8192 frame (128 MiB) on top of the interpreter's ~200 MiB.
CHILD_MB = 300
# What the server process may grow by while one hostile upload is handled.
SERVER_GROWTH = 64 * MiB


@pytest.fixture
def settings(tmp_path: Path, demo_database: str) -> Settings:
    return make_settings(tmp_path, database_url=demo_database, parser_memory_mb=CHILD_MB)


def peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def current_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def measured_post(user: Any, patient: str, data: bytes) -> tuple[int, Any, int]:
    """Upload ``data``; the answer and how much the server process's peak memory grew."""
    peak_rss_reset()
    before = current_rss()
    status, body = await post_file(user, patient, io.BytesIO(data))
    return status, body, peak_rss() - before


async def test_a_deflated_dicom_bomb_is_refused_without_inflating_it(
    scenario: Scenario, app: Any
) -> None:
    # Issue 15 #13: 261 KB on the wire, 256 MiB once inflated.
    bomb = deflated_dicom(256 * MiB)
    assert len(bomb) < 300 * 1024
    clinic, patient = await scenario.user("clinic1"), await scenario.patient()
    status, body, growth = await measured_post(clinic, patient, bomb)
    assert (status, body["error"]["code"], body["error"]["fields"]) == (
        413,
        "decoded_too_large",
        ["body"],
    )
    assert "inflates" in body["error"]["message"]
    assert growth < SERVER_GROWTH, f"the server grew by {growth / MiB:.0f} MiB"
    assert await count(app, documents) == 0

    # A deflated file of a sensible size is still accepted (and previewed).
    status, body = await post_file(clinic, patient, io.BytesIO(deflated_dicom(2 * MiB)))
    assert status == 201, body
    assert body["document"]["has_preview"] is True


async def test_pixel_data_size_is_checked_before_decoding(scenario: Scenario, app: Any) -> None:
    clinic, patient = await scenario.user("clinic1"), await scenario.patient()
    # 12000 x 12000 is 144 megapixels (the limit is Pillow's 89.5), announced by
    # a header whose pixel data is two bytes long.
    status, body, growth = await measured_post(clinic, patient, huge_header_dicom(12000, 12000))
    assert (status, body["error"]["code"]) == (413, "decoded_too_large")
    assert growth < SERVER_GROWTH
    # Frames count too: 1000 frames of 2048 x 2048 x 16 bits is 8 GiB.
    status, body = await post_file(clinic, patient, huge_header_dicom(2048, 2048, frames=1000))
    assert (status, body["error"]["code"]) == (413, "decoded_too_large")
    assert await count(app, documents) == 0


async def test_a_large_rle_preview_dies_in_its_child_and_the_file_is_kept(
    scenario: Scenario, app: Any
) -> None:
    # Issue 15 #13: an 8192 x 8192 RLE frame took 1.2 GB of the server to preview.
    data = rle_dicom(8192)
    assert len(data) < 3 * MiB
    clinic, patient = await scenario.user("clinic1"), await scenario.patient()
    status, body, growth = await measured_post(clinic, patient, data)
    assert status == 201, body
    doc = body["document"]
    assert (doc["has_preview"], doc["preview_url"]) == (False, None)
    assert doc["meta"]["preview"] is False
    assert doc["meta"]["preview_error"] in ("MemoryError", "memory")
    assert (doc["meta"]["rows"], doc["meta"]["columns"]) == (8192, 8192)
    assert growth < SERVER_GROWTH, f"the server grew by {growth / MiB:.0f} MiB"
    resp = await clinic.client.get(doc["content_url"])
    assert resp.status == 200
    assert pydicom.dcmread(io.BytesIO(await resp.read())).Rows == 8192


async def test_picture_pixels_are_limited(scenario: Scenario, app: Any) -> None:
    clinic, patient = await scenario.user("clinic1"), await scenario.patient()
    # 100 megapixels in 12 KB.
    status, body, growth = await measured_post(clinic, patient, png(10000, 10000))
    assert (status, body["error"]["code"]) == (413, "decoded_too_large")
    assert growth < SERVER_GROWTH
    status, body = await post_file(clinic, patient, png(2000, 1000))
    assert status == 201, body


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"%PDF-1.7\n" + b"this is not a PDF at all\n" * 40, "invalid_pdf"),
        (pdf_without_pages(), "invalid_pdf"),
        (dicom_without_data_set(), "invalid_dicom"),
    ],
    ids=["pdf-magic-only", "pdf-no-pages", "dicm-magic-only"],
)
async def test_files_that_only_start_right_are_refused(
    scenario: Scenario, app: Any, data: bytes, code: str
) -> None:
    # Issue 15 #19.
    clinic, patient = await scenario.user("clinic1"), await scenario.patient()
    status, body = await post_file(clinic, patient, data)
    assert (status, body["error"]["code"], body["error"]["fields"]) == (400, code, ["body"])
    assert await count(app, documents) == 0


async def test_dicom_is_stored_de_identified(scenario: Scenario, app: Any) -> None:
    # Issue 15 #19: the downloadable file carried the patient's name and ID.
    clinic, patient = await scenario.user("clinic1"), await scenario.patient()
    original = dicom()
    source = pydicom.dcmread(io.BytesIO(original))
    doc = await upload(clinic, patient, original, filename="ct.dcm")
    resp = await clinic.client.get(doc["content_url"])
    served = await resp.read()
    assert DICOM_PATIENT.encode() not in served
    assert b"P123456" not in served
    ds = pydicom.dcmread(io.BytesIO(served))
    assert (str(ds.PatientName), ds.PatientID) == ("", "")
    assert ds.PatientIdentityRemoved == "YES"
    # The clinical content is kept: the study, the modality, the pixels.
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert (ds.Modality, ds.StudyDate, ds.BodyPartExamined) == ("CT", "20261120", "CHEST")
    assert np.array_equal(ds.pixel_array, source.pixel_array)
    # The record keeps who the patient is, as the clinic entered it.
    status, body = await clinic.get(f"/api/patients/{patient}")
    assert status == 200
    assert body["patient"]["name"] == "刘大爷"


async def test_the_fhir_export_masks_the_id_number_except_for_the_clinic(
    scenario: Scenario, app: Any
) -> None:
    # Issue 15 #19: every specialist of the department got the full number.
    c = (await scenario.consultation("accepted")).json
    patient_id = await scenario.patient()
    clinic, cardio = await scenario.user("clinic1"), await scenario.user("cardio1")
    status, shown = await cardio.get(f"/api/consultations/{c['id']}")
    assert status == 200
    masked = _find(shown, "national_id_masked")
    async with app[DB].read() as conn:
        query = sa.select(patients.c.national_id).where(patients.c.id == patient_id)
        full = (await conn.execute(query)).scalar_one()
    assert masked and masked != full

    status, bundle = await cardio.get(f"/api/consultations/{c['id']}/fhir")
    assert status == 200
    [resource] = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert full not in str(bundle)
    assert [i["value"] for i in resource["identifier"]] == [masked]
    assert all(i.get("system") != RESIDENT_ID_SYSTEM for i in resource["identifier"])

    status, bundle = await clinic.get(f"/api/consultations/{c['id']}/fhir")
    [resource] = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert resource["identifier"] == [{"system": RESIDENT_ID_SYSTEM, "value": full}]


def _find(data: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in a JSON answer."""
    if isinstance(data, dict):
        if key in data:
            return data[key]
        data = list(data.values())
    if isinstance(data, list):
        for item in data:
            found = _find(item, key)
            if found is not None:
                return found
    return None
