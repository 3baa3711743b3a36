"""The frame viewer's data: one frame of a stored DICOM document, decoded on the server."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from records.schema import audit_log
from web.keys import DB
from web.settings import Settings

from ..conftest import make_settings
from ..records.samples import dicom, pdf
from ..scenario import Scenario
from .encryption import ENCRYPTION

DATA = Path(__file__).parents[1] / "data" / "dicom"
PYDICOM_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, demo_database: str) -> Settings:
    return make_settings(
        tmp_path,
        database_url=demo_database,
        **ENCRYPTION[getattr(request, "param", "plaintext")],
    )


async def upload(user: Any, patient_id: str, consultation_id: str, data: bytes) -> dict[str, Any]:
    resp = await user.client.post(
        f"/api/patients/{patient_id}/documents",
        data=data,
        params={"consultation_id": consultation_id, "filename": "x.dcm"},
        headers={"X-CSRF-Token": user.csrf, "Content-Type": "application/octet-stream"},
    )
    body = await resp.json()
    assert resp.status == 201, body
    document: dict[str, Any] = body["document"]
    return document


async def frame(user: Any, document_id: str, index: str) -> tuple[int, dict[str, Any], bytes]:
    resp = await user.client.get(f"/api/documents/{document_id}/frame", params={"index": index})
    if resp.status != 200:
        return resp.status, await resp.json(), b""
    assert resp.headers["Cache-Control"] == "private, no-store"
    return resp.status, json.loads(resp.headers["X-Frame"]), await resp.read()


@pytest.mark.parametrize("settings", list(ENCRYPTION), indirect=True)
async def test_each_frame_of_an_upload_is_decoded_encrypted_or_not(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("accepted")
    doc = await upload(c.clinic, c.patient_id, c.id, dicom(frames=3, photometric="MONOCHROME1"))
    for index in ("0", "2"):
        status, info, data = await frame(c.specialist, doc["id"], index)
        assert status == 200
        assert (info["frames"], info["rows"], info["columns"]) == (3, 64, 64)
        assert info["photometric"] == "MONOCHROME1"
        assert (info["center"], info["width"]) == (1000, 2000)
        values = struct.unpack("<64f", data[: 64 * 4])
        # The sample's ramp: 0 on the left to 4000 on the right.
        assert values[0] == 0 and values[-1] == 4000
    status, body, _ = await frame(c.specialist, doc["id"], "3")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body, _ = await frame(c.specialist, doc["id"], "-1")
    assert (status, body["error"]["fields"]) == (400, ["index"])
    async with app[DB].read() as conn:
        frames = (
            await conn.execute(
                sa.select(sa.func.count()).where(audit_log.c.action == "document.frame")
            )
        ).scalar_one()
    assert frames >= 2


async def test_frames_without_a_window_use_the_frames_range_and_rgb_comes_as_bytes(
    scenario: Scenario,
) -> None:
    c = await scenario.consultation("accepted")
    plain = await upload(c.clinic, c.patient_id, c.id, dicom(window=None))
    status, info, _ = await frame(c.specialist, plain["id"], "0")
    assert (status, info["low"], info["high"]) == (200, 0, 4000)
    assert (info["center"], info["width"]) == (2000, 4000)
    rgb = (PYDICOM_FILES / "SC_rgb_small_odd.dcm").read_bytes()
    doc = await upload(c.clinic, c.patient_id, c.id, rgb)
    status, info, data = await frame(c.specialist, doc["id"], "0")
    assert (status, info["samples"], info["photometric"]) == (200, 3, "RGB")
    assert len(data) == info["rows"] * info["columns"] * 3


async def test_only_a_dicom_image_has_frames_and_only_for_those_who_see_it(
    scenario: Scenario,
) -> None:
    c = await scenario.consultation("accepted")
    doc = await upload(c.clinic, c.patient_id, c.id, dicom())
    other = await scenario.user("resp1")
    status, _, _ = await frame(other, doc["id"], "0")
    assert status == 404
    resp = await c.clinic.client.post(
        f"/api/patients/{c.patient_id}/documents",
        data=pdf(),
        params={"consultation_id": c.id},
        headers={"X-CSRF-Token": c.clinic.csrf, "Content-Type": "application/octet-stream"},
    )
    pdf_doc = (await resp.json())["document"]
    status, body, _ = await frame(c.clinic, pdf_doc["id"], "0")
    assert (status, body["error"]["code"]) == (404, "not_found")
    no_pixels = await upload(c.clinic, c.patient_id, c.id, dicom(pixels=False))
    status, _, _ = await frame(c.clinic, no_pixels["id"], "0")
    assert status == 404
