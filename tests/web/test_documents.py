"""Documents through the real API: real app, real SQLite, real files on disk."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pydicom
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from PIL import Image

from records import sealed
from records.dicomfile import deidentify
from records.schema import audit_log, blobs, documents
from web.app import create_app
from web.keys import DB, MATCHING
from web.settings import Settings

from ..conftest import DB_NAME, ManualClock, logins, make_settings
from ..patience import PATIENCE
from ..records.samples import DICOM_PATIENT, LAB_REPORT, dicom, image, pdf
from ..scenario import Scenario
from .encryption import ENCRYPTION

LoginAs = Any
User = Any
LIMIT = 512 * 1024
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"
STORED = re.compile(r"^files/([0-9a-f]{2})/([0-9a-f]{2})/(\1\2[0-9a-f]{60})$")


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, demo_database: str) -> Settings:
    # A small upload limit, to show where reading stops; encryption at rest
    # where a test asks for it (``indirect`` parameters).
    return make_settings(
        tmp_path,
        database_url=demo_database,
        max_upload_bytes=LIMIT,
        **ENCRYPTION[getattr(request, "param", "plaintext")],
    )


async def post_file(
    user: User, patient_id: str, data: Any, *, headers: dict[str, str] | None = None, **params: str
) -> tuple[int, Any]:
    resp = await user.client.post(
        f"/api/patients/{patient_id}/documents",
        data=data,
        params=params,
        headers={"X-CSRF-Token": user.csrf, "Content-Type": "application/octet-stream"}
        | (headers or {}),
    )
    return resp.status, await resp.json()


async def upload(user: User, patient_id: str, data: bytes, **params: str) -> dict[str, Any]:
    status, body = await post_file(user, patient_id, data, **params)
    assert status == 201, body
    document: dict[str, Any] = body["document"]
    return document


def disk(data_dir: Path) -> list[str]:
    """Files under the data directory that are not the database."""
    return sorted(
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.is_file() and not p.name.startswith(DB_NAME)
    )


async def audit_entries(app: Any, prefix: str) -> list[dict[str, Any]]:
    async with app[DB].read() as conn:
        rows = await conn.execute(
            sa.select(audit_log).where(audit_log.c.action.startswith(prefix)).order_by("seq")
        )
        return [dict(r) for r in rows.mappings()]


async def count(app: Any, table: sa.Table) -> int:
    async with app[DB].read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


def deidentified(data: bytes) -> bytes:
    """What the server stores of a DICOM upload: the same file without identities."""
    ds = pydicom.dcmread(io.BytesIO(data))
    deidentify(ds)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


SAMPLES = {
    "pdf": (pdf(pages=2), "化验单.pdf", "application/pdf"),
    "jpeg": (image("JPEG"), "舌象.jpg", "image/jpeg"),
    "png": (image("PNG"), "心电图.png", "image/png"),
    "dicom": (dicom(), "胸部CT.dcm", "application/dicom"),
    "text": (LAB_REPORT.encode(), "血常规.txt", "text/plain; charset=utf-8"),
}


@pytest.mark.parametrize("kind", list(SAMPLES))
async def test_each_kind_uploads_and_is_served_back(
    scenario: Scenario, app: Any, settings: Settings, kind: str
) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    data, name, content_type = SAMPLES[kind]
    # The Content-Type the client sends does not matter; the content decides.
    doc = await upload(clinic, pid, data, filename=name, title=f"{kind} 报告")
    assert doc["kind"] == kind
    assert doc["filename"] == name
    assert doc["title"] == f"{kind} 报告"
    # A DICOM file is stored de-identified (see test_dicom_is_stored_de_identified).
    stored = deidentified(data) if kind == "dicom" else data
    assert doc["size"] == len(stored)
    assert doc["sha256"] == hashlib.sha256(stored).hexdigest()
    assert doc["uploaded_by"]["display_name"] == "王建国"
    assert doc["has_preview"] is (kind == "dicom")
    if kind == "pdf":
        assert doc["pages"] == 2
    if kind in ("jpeg", "png"):
        assert (doc["meta"]["width"], doc["meta"]["height"]) == (40, 30)

    status, body = await clinic.get(f"/api/documents/{doc['id']}")
    assert (status, body["document"]) == (200, doc)

    resp = await clinic.client.get(doc["content_url"])
    assert resp.status == 200
    assert await resp.read() == stored
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["Content-Disposition"] == "inline; filename*=UTF-8''" + quote(name, safe="")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "private, no-store"
    if kind == "text":
        assert (await resp.text()) == LAB_REPORT

    resp = await clinic.client.get(f"/api/documents/{doc['id']}/preview")
    if kind == "dicom":
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/png"
        with Image.open(io.BytesIO(await resp.read())) as img:
            assert (img.format, img.size) == ("PNG", (64, 64))
    else:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"

    # The content and (for DICOM) its preview are the only files written.
    on_disk = [p for p in disk(settings.data_dir) if not p.startswith("recordings/")]
    assert len(on_disk) == (2 if kind == "dicom" else 1)
    assert all(STORED.match(p) for p in on_disk), on_disk


async def test_dicom_keeps_technical_tags_only(scenario: Scenario, app: Any) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    doc = await upload(clinic, pid, dicom(frames=2), filename="ct.dcm")
    assert doc["meta"] == {
        "modality": "CT",
        "study_date": "2026-11-20",
        "body_part": "CHEST",
        "rows": 64,
        "columns": 64,
        "frames": 2,
        "photometric": "MONOCHROME2",
        "has_pixels": True,
        "preview": True,
    }
    assert DICOM_PATIENT not in str(doc)


async def test_dicom_without_pixel_data_is_stored_without_a_preview(
    scenario: Scenario, app: Any
) -> None:
    clinic = await scenario.user("clinic1")
    ids = await scenario.ids()
    data = dicom(pixels=False)
    doc = await upload(clinic, ids["陈阿姨"], data, filename="sr.dcm")
    assert doc["kind"] == "dicom"
    assert doc["meta"]["has_pixels"] is False
    assert (doc["has_preview"], doc["preview_url"]) == (False, None)
    status, body = await clinic.get(f"/api/documents/{doc['id']}/preview")
    assert (status, body["error"]["code"]) == (404, "not_found")
    resp = await clinic.client.get(doc["content_url"])
    assert await resp.read() == deidentified(data)


async def test_the_type_comes_from_the_content(scenario: Scenario, app: Any, settings: Any) -> None:
    clinic = await scenario.user("clinic1")
    patient = await scenario.patient()

    status, body = await post_file(
        clinic,
        patient,
        image("PNG"),
        filename="report.pdf",
        declared_type="pdf",
        headers={"Content-Type": "application/pdf"},
    )
    assert (status, body["error"]["code"], body["error"]["fields"]) == (
        400,
        "type_mismatch",
        ["declared_type"],
    )
    assert "png" in body["error"]["message"]

    status, body = await post_file(clinic, patient, os.urandom(4096), filename="scan.pdf")
    assert (status, body["error"]["code"], body["error"]["fields"]) == (
        415,
        "unsupported_type",
        ["body"],
    )

    status, body = await post_file(clinic, patient, b"", filename="empty.txt")
    assert (status, body["error"]["code"]) == (415, "unsupported_type")

    status, body = await post_file(clinic, patient, b"\xff\xd8\xff" + b"junk" * 100)
    assert (status, body["error"]["code"], body["error"]["fields"]) == (
        400,
        "invalid_image",
        ["body"],
    )

    status, body = await post_file(clinic, patient, pdf(), declared_type="word")
    assert (status, body["error"]["code"], body["error"]["fields"]) == (
        400,
        "invalid_fields",
        ["declared_type"],
    )

    # The declared type may be a kind or a media type when it matches.
    status, body = await post_file(clinic, patient, pdf(), declared_type="application/pdf")
    assert status == 201, body

    # Nothing refused was kept: one document, one file, no temporary file.
    assert await count(app, documents) == 1
    on_disk = [p for p in disk(settings.data_dir) if not p.startswith("recordings/")]
    assert len(on_disk) == 1
    assert os.listdir(settings.data_dir / "incoming") == []


async def test_reading_stops_at_the_size_limit(
    scenario: Scenario, app: Any, settings: Settings
) -> None:
    clinic = await scenario.user("clinic1")
    patient = await scenario.patient()
    chunk = b"%" * 65536
    total = 64 * 1024 * 1024
    sent = 0
    answered = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < total:
            if sent >= LIMIT + 4 * 1024 * 1024:
                # Well past the limit, the rest of the body waits for the answer:
                # the server has to answer without having read the whole body.
                await asyncio.wait_for(answered.wait(), 10)
                return
            sent += len(chunk)
            yield chunk

    resp = await clinic.client.post(
        f"/api/patients/{patient}/documents",
        data=body(),
        headers={"X-CSRF-Token": clinic.csrf},
    )
    sent_when_answered = sent
    answered.set()
    assert resp.status == 413
    error = (await resp.json())["error"]
    assert (error["code"], error["fields"]) == ("too_large", ["body"])
    assert sent_when_answered < total
    assert os.listdir(settings.data_dir / "incoming") == []
    assert list((settings.data_dir / "files").rglob("*")) == []

    # With a Content-Length over the limit, no byte is read at all.
    status, data = await post_file(clinic, patient, b"x" * (LIMIT + 1))
    assert (status, data["error"]["code"]) == (413, "too_large")
    # Exactly at the limit is accepted.
    exact = LAB_REPORT.encode() + b"a" * (LIMIT - len(LAB_REPORT.encode()))
    status, data = await post_file(clinic, patient, exact)
    assert (status, data["document"]["size"]) == (201, LIMIT)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.pdf", "y.pdf"),
        ("bad\x00name\n.txt", "badname.txt"),
        ("..", "document.txt"),
        ("/", "document.txt"),
    ],
)
async def test_file_names_never_reach_the_file_system(
    scenario: Scenario, app: Any, settings: Settings, name: str, shown: str
) -> None:
    clinic = await scenario.user("clinic1")
    patient = await scenario.patient()
    doc = await upload(clinic, patient, LAB_REPORT.encode(), filename=name)
    assert doc["filename"] == shown
    assert doc["title"] == shown
    resp = await clinic.client.get(doc["content_url"])
    assert resp.headers["Content-Disposition"] == "inline; filename*=UTF-8''" + quote(
        shown, safe=""
    )
    on_disk = [p for p in disk(settings.data_dir) if not p.startswith("recordings/")]
    assert on_disk == [f"files/{doc['sha256'][:2]}/{doc['sha256'][2:4]}/{doc['sha256']}"]
    assert not (settings.data_dir.parent / "etc").exists()


async def test_the_name_may_come_from_content_disposition(scenario: Scenario, app: Any) -> None:
    clinic = await scenario.user("clinic1")
    patient = await scenario.patient()
    status, body = await post_file(
        clinic,
        patient,
        pdf(),
        headers={"Content-Disposition": "attachment; filename*=UTF-8''" + quote("../出院小结.pdf")},
    )
    assert status == 201, body
    assert body["document"]["filename"] == "出院小结.pdf"
    status, body = await post_file(
        clinic, patient, pdf(), title="line\nbreak\x07 title", filename="a.pdf"
    )
    assert body["document"]["title"] == "line break title"
    status, body = await post_file(clinic, patient, pdf(), title="长" * 201)
    assert (status, body["error"]["fields"]) == (400, ["title"])


async def test_the_same_file_twice_is_two_documents_and_one_file(
    scenario: Scenario, app: Any, settings: Settings
) -> None:
    clinic = await scenario.user("clinic1")
    ids = await scenario.ids()
    data = pdf(pages=1)
    first = await upload(clinic, ids["刘大爷"], data, filename="a.pdf")
    second = await upload(clinic, ids["陈阿姨"], data, filename="b.pdf")
    assert first["id"] != second["id"]
    assert first["sha256"] == second["sha256"]
    assert await count(app, documents) == 2
    assert await count(app, blobs) == 1
    assert len([p for p in disk(settings.data_dir) if p.startswith("files/")]) == 1
    _, body = await clinic.get(f"/api/patients/{ids['陈阿姨']}/documents")
    assert [d["filename"] for d in body["documents"]] == ["b.pdf"]


async def test_another_clinic_gets_the_answer_of_an_unknown_id(
    scenario: Scenario, app: Any
) -> None:
    clinic, other = await scenario.user("clinic1"), await scenario.user("clinic2")
    patient = await scenario.patient()
    doc = await upload(clinic, patient, pdf(), filename="a.pdf")

    for suffix in ("", "/content", "/preview"):
        mine = await other.client.get(f"/api/documents/{doc['id']}{suffix}")
        unknown = await other.client.get(f"/api/documents/{UNKNOWN_ID}{suffix}")
        assert mine.status == unknown.status == 404
        assert await mine.json() == await unknown.json()

    # Nor may they upload to, or list, the other clinic's patient.
    status, body = await post_file(other, patient, pdf())
    _, unknown_body = await post_file(other, UNKNOWN_ID, pdf())
    assert status == 404
    assert body == unknown_body
    status, body = await other.get(f"/api/patients/{patient}/documents")
    assert status == 404

    denied = await audit_entries(app, "document.denied")
    assert [(e["object_id"], e["actor_id"]) for e in denied] == [
        (doc["id"], other.account["id"]),
        (UNKNOWN_ID, other.account["id"]),
    ] * 3
    probes = [e["object_id"] for e in await audit_entries(app, "patient.denied")]
    assert probes.count(patient) == 2
    # The owner's document was not read by them: no download was audited.
    downloads = await audit_entries(app, "document.download")
    assert downloads == []


async def test_consultation_documents_are_seen_by_its_specialists_only(
    scenario: Scenario, app: Any, clock: Any
) -> None:
    clinic = await scenario.user("clinic1")
    cardio, resp1, coord = (
        await scenario.user("cardio1"),
        await scenario.user("resp1"),
        await scenario.user("coord1"),
    )
    pid = await scenario.patient()
    c = (await scenario.consultation()).json
    data = dicom()
    attached = await upload(clinic, pid, data, filename="ct.dcm", consultation_id=c["id"])
    assert attached["consultation_id"] == c["id"]
    clock.advance(60)
    unattached = await upload(clinic, pid, pdf(), filename="old.pdf")

    for user in (cardio, coord):
        status, body = await user.get(f"/api/consultations/{c['id']}/documents")
        assert status == 200
        assert [d["id"] for d in body["documents"]] == [attached["id"]]
        status, body = await user.get(f"/api/documents/{attached['id']}")
        assert status == 200
        resp = await user.client.get(attached["content_url"])
        assert (resp.status, await resp.read()) == (200, deidentified(data))
        resp = await user.client.get(attached["preview_url"])
        assert resp.status == 200
        # A document of the same patient not attached to the consultation stays hidden.
        status, _ = await user.get(f"/api/documents/{unattached['id']}")
        assert status == 404

    # A specialist of another department sees none of it.
    status, _ = await resp1.get(f"/api/consultations/{c['id']}/documents")
    assert status == 404
    for suffix in ("", "/content", "/preview"):
        status, _ = await resp1.get(f"/api/documents/{attached['id']}{suffix}")
        assert status == 404

    # The clinic sees both, and the attachment is on the consultation's timeline.
    status, body = await clinic.get(f"/api/patients/{pid}/documents")
    assert [d["id"] for d in body["documents"]] == [unattached["id"], attached["id"]]
    status, body = await clinic.get(f"/api/consultations/{c['id']}/timeline")
    shared = [e for e in body["events"] if e["kind"] == "document_shared"]
    assert [e["data"] for e in shared] == [{"document_id": attached["id"], "kind": "dicom"}]

    # Every view and download is audited with the document and the patient.
    by_action: dict[str, list[dict[str, Any]]] = {}
    for entry in await audit_entries(app, "document."):
        by_action.setdefault(entry["action"], []).append(entry)
    for action, n in (("document.read", 2), ("document.download", 2), ("document.preview", 2)):
        entries = by_action[action]
        assert len(entries) == n, action
        assert {e["object_id"] for e in entries} == {attached["id"]}
        assert {e["detail"]["patient_id"] for e in entries} == {pid}
        assert {e["actor_id"] for e in entries} == {cardio.account["id"], coord.account["id"]}
    assert {e["object_id"] for e in by_action["document.denied"]} == {
        unattached["id"],
        attached["id"],
    }


async def test_documents_attach_only_to_the_patients_own_consultations(
    scenario: Scenario, app: Any
) -> None:
    clinic = await scenario.user("clinic1")
    ids = await scenario.ids()
    c = (await scenario.consultation(patient="刘大爷")).json
    status, body = await post_file(clinic, ids["陈阿姨"], pdf(), consultation_id=c["id"])
    assert (status, body["error"]["fields"]) == (404, ["consultation_id"])
    assert await count(app, documents) == 0


@pytest.mark.parametrize("settings", list(ENCRYPTION), indirect=True)
async def test_range_requests_get_partial_content(
    scenario: Scenario, app: Any, settings: Settings
) -> None:
    clinic = await scenario.user("clinic1")
    patient = await scenario.patient()
    data = pdf(pages=5)
    doc = await upload(clinic, patient, data)
    resp = await clinic.client.get(doc["content_url"], headers={"Range": "bytes=10-19"})
    assert resp.status == 206
    assert await resp.read() == data[10:20]
    assert resp.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    resp = await clinic.client.get(doc["content_url"], headers={"Range": "bytes=-8"})
    assert (resp.status, await resp.read()) == (206, data[-8:])
    downloads = await audit_entries(app, "document.download")
    assert [e["detail"].get("range") for e in downloads] == ["bytes=10-19", "bytes=-8"]
    # A whole download is the plaintext; on disk it is sealed when a key is set.
    resp = await clinic.client.get(doc["content_url"])
    assert (resp.status, await resp.read()) == (200, data)
    raw = (
        (settings.data_dir / "files" / doc["sha256"][:2] / doc["sha256"][2:4])
        .joinpath(doc["sha256"])
        .read_bytes()
    )
    assert (raw == data) is (settings.keyring() is None)
    if settings.keyring() is not None:
        assert raw.startswith(sealed.MAGIC) and data[:64] not in raw and b"%PDF" not in raw


async def test_specialists_cannot_upload(scenario: Scenario, app: Any) -> None:
    cardio, patient = await scenario.user("cardio1"), await scenario.patient()
    status, body = await post_file(cardio, patient, pdf())
    assert (status, body["error"]["code"]) == (404, "not_found")


async def half_sent_upload(server: Any, clinic: User, patient: str) -> asyncio.StreamWriter:
    """A clinic's upload of 200,000 bytes of which 100,010 are sent; the rest never is."""
    cookies = "; ".join(f"{c.key}={c.value}" for c in clinic.client.session.cookie_jar)
    _, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        (
            f"POST /api/patients/{patient}/documents HTTP/1.1\r\n"
            f"Host: {server.host}:{server.port}\r\n"
            f"Cookie: {cookies}\r\nX-CSRF-Token: {clinic.csrf}\r\n"
            "Content-Length: 200000\r\n\r\n"
        ).encode()
        + b"%PDF-1.4\n"
        + b"x" * 100_000
    )
    await writer.drain()
    return writer


async def until_files(incoming: Path, count: int) -> None:
    """Until ``incoming`` holds ``count`` files. Polled: a file appearing and going
    is not an event the test can await. 2 s, stretched in the niced database
    passes, where the server can go without a CPU for seconds (a plain 2 s once
    left the file in place there)."""
    for _ in range(int(200 * PATIENCE)):
        if len(os.listdir(incoming)) == count:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"incoming/ holds {os.listdir(incoming)}, not {count} file(s)")


async def test_an_interrupted_upload_leaves_no_file(
    scenario: Scenario, app: Any, server: Any, settings: Settings
) -> None:
    clinic = await scenario.user("clinic1")
    writer = await half_sent_upload(server, clinic, await scenario.patient())
    incoming = settings.data_dir / "incoming"
    await until_files(incoming, 2)  # the upload and its scratch file
    writer.close()
    await writer.wait_closed()
    await until_files(incoming, 0)
    assert await count(app, documents) == 0


async def test_a_server_stopped_during_an_upload_leaves_no_file(settings: Settings) -> None:
    # A restart while a clinic's upload is half sent: aiohttp waits for the
    # request (60 s in production, 1 s here), then cancels its handler, which
    # must still remove what it had written.
    app = create_app(settings, clock=ManualClock())
    server = TestServer(app)
    await server.start_server(shutdown_timeout=1.0)
    async with logins(server) as login:
        scenario = Scenario(login, matching=app[MATCHING], clock=ManualClock())
        clinic = await scenario.user("clinic1")
        writer = await half_sent_upload(server, clinic, await scenario.patient())
        incoming = settings.data_dir / "incoming"
        await until_files(incoming, 2)
        await server.close()  # the client is still sending
        assert os.listdir(incoming) == []
        writer.close()


@pytest.mark.parametrize("settings", ["aes-256-gcm"], indirect=True)
async def test_an_upload_a_killed_server_left_is_removed_when_it_starts_again(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # What a process killed mid-upload leaves is the document as the clinic
    # sent it, not sealed even with encryption at rest.
    incoming = settings.data_dir / "incoming"
    incoming.mkdir(parents=True)
    left = incoming / "upload-x1y2z3.part"
    left.write_bytes(pdf()[:1000])
    server = TestServer(create_app(settings, clock=ManualClock()))
    await server.start_server()
    try:
        assert not left.exists()
        assert "removed 1 upload(s) left unfinished by an unclean stop" in caplog.text
    finally:
        await server.close()


@pytest.mark.parametrize("settings", ["aes-256-gcm"], indirect=True)
async def test_a_cleaned_dicom_copy_and_its_preview_are_sealed_at_rest(
    scenario: Scenario, settings: Settings
) -> None:
    # The de-identified copy is stored by another path than a plain upload
    # (accept_file): it must be sealed all the same.
    clinic = await scenario.user("clinic1")
    doc = await upload(clinic, await scenario.patient(), dicom())
    stored = list((settings.data_dir / "files").rglob("*"))
    files = [p for p in stored if p.is_file()]
    assert len(files) == 2  # the cleaned DICOM and its PNG preview
    for path in files:
        assert path.read_bytes().startswith(sealed.MAGIC), path
    resp = await clinic.client.get(doc["content_url"])
    assert resp.status == 200 and b"DICM" in (await resp.read())[:200]
