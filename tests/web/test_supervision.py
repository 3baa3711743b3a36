"""The supervision export (监管数据导出): files, schema, signature, range, rights, audit."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from records import store, supervision, supervision_archive
from records.schema import audit_log
from web.keys import DB

from ..conftest import LoginAs, ManualClock
from ..scenario import Scenario, User

API = "/api/supervision/export"
PATIENT_NAMES = ("刘大爷", "陈阿姨", "小明")
# 2026-11-23 16:00 UTC is midnight starting 24 November in Beijing.
BEIJING_MIDNIGHT = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)


async def download(user: User, **query: str) -> tuple[int, bytes, Any]:
    resp = await user.client.get(API, params=query)
    return resp.status, await resp.read(), resp.headers


async def export_zip(user: User, first: str, last: str) -> dict[str, bytes]:
    status, body, headers = await download(user, **{"from": first, "to": last})
    assert status == 200, body
    assert headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        return {name: z.read(name) for name in z.namelist()}


async def ids_of(user: User, first: str, last: str) -> list[str]:
    files = await export_zip(user, first, last)
    return [c["id"] for c in json.loads(files["consultations.json"])["consultations"]]


async def add_recording(app: web.Application, consultation_id: str, participant_id: str) -> str:
    """A finished recording row, as the recorder leaves one (its file is not needed here)."""
    digest = hashlib.sha256(consultation_id.encode()).hexdigest()

    def work(conn: sa.Connection) -> None:
        rid = store.add_recording(
            conn,
            consultation_id=consultation_id,
            participant_id=participant_id,
            part=1,
            path=f"{consultation_id}/{participant_id}-1.webm",
            container="webm",
            started_at=BEIJING_MIDNIGHT - timedelta(hours=7),
        )
        store.update_recording(conn, rid, status="finished", sha256=digest, size=1000)

    await app[DB].run_write(work)
    return digest


async def audit_entries(app: web.Application, action: str) -> list[Any]:
    def work(conn: sa.Connection) -> list[Any]:
        return list(
            conn.execute(
                sa.select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq)
            ).mappings()
        )

    return await app[DB].run_read(work)


@pytest.fixture
async def admin(login_as: LoginAs) -> User:
    return await login_as("admin1")


async def test_export_matches_schema_csv_and_manifest(
    scenario: Scenario, app: web.Application, admin: User
) -> None:
    signed = await scenario.consultation("signed", consent=("consultation", "recording"))
    cardio = await scenario.user("cardio1")
    status, data = await cardio.post(
        f"{signed.url}/opinion/{signed.opinion['id']}/addendum", {"text": "补充：一周后复查心电图"}
    )
    assert status == 201, data
    addendum_sha = data["opinion"]["sha256"]
    recording_sha = await add_recording(app, signed.id, cardio.account["id"])
    referred = await scenario.consultation("referred", consent=("consultation",))
    waiting = await scenario.consultation("requested", urgency="urgent")
    cancelled = await scenario.consultation("cancelled")

    files = await export_zip(admin, "2026-11-23", "2026-11-23")
    assert set(files) == {
        "consultations.json",
        "consultations.csv",
        "manifest.json",
        "manifest.json.sig",
        "signing-key.pem",
        "supervision-export.schema.json",
    }
    doc = json.loads(files["consultations.json"])
    assert supervision.schema_errors(doc) == []
    rows = {r["id"]: r for r in doc["consultations"]}
    assert set(rows) == {signed.id, referred.id, waiting.id, cancelled.id}
    assert doc["count"] == 4

    s = rows[signed.id]
    assert s["state"] == "signed"
    assert s["outcome_kind"] == "opinion"
    assert s["outcome_sha256"] == signed.opinion["sha256"]
    assert s["addenda_sha256"] == [addendum_sha]
    assert s["recorded"] is True
    assert s["recordings_sha256"] == [recording_sha]
    assert s["requesting_institution_kind"] == "township_clinic"
    assert s["department_code"] == "cardiology"
    assert s["specialist_licence_no"] and s["requesting_physician_licence_no"]
    assert s["requested_at"] == "2026-11-23T16:00:00+08:00"
    assert s["accepted_at"].endswith("+08:00") and s["signed_at"].endswith("+08:00")
    assert s["accepted_on_time"] is True and s["completed_on_time"] is True
    # A masked resident ID number, never the whole one.
    assert "*" in s["patient_id_masked"] and len(s["patient_id_masked"]) == 18
    assert rows[referred.id]["outcome_kind"] == "referral"
    assert rows[referred.id]["recorded"] is False
    assert rows[waiting.id]["accepted_at"] is None
    assert rows[waiting.id]["accepted_on_time"] is None  # 12 h have not passed yet
    assert rows[cancelled.id]["completed_on_time"] is None

    # The CSV holds the same rows, field for field.
    csv_rows = supervision.read_csv(files["consultations.csv"])
    assert list(csv_rows[0]) == list(supervision.FIELD_NAMES)
    assert csv_rows == [
        {k: supervision.csv_cell(v) for k, v in r.items()} for r in doc["consultations"]
    ]

    # The manifest lists each file's size and SHA-256, and the signature holds.
    manifest = json.loads(files["manifest.json"])
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == {
        "consultations.json",
        "consultations.csv",
        "supervision-export.schema.json",
    }
    for name, entry in listed.items():
        assert entry["size"] == len(files[name])
        assert entry["sha256"] == hashlib.sha256(files[name]).hexdigest()
    assert manifest["range"]["start"] == "2026-11-23T00:00:00+08:00"
    assert manifest["range"]["end_exclusive"] == "2026-11-24T00:00:00+08:00"
    assert manifest["producer"]["name"] == "teleconsult"
    key = supervision_archive.load_public_key(files["signing-key.pem"])
    key.verify(files["manifest.json.sig"], files["manifest.json"])
    assert manifest["signature"]["key_fingerprint"] == supervision_archive.fingerprint(key)

    # No patient's name anywhere in what leaves the server.
    everything = b"".join(files.values()).decode("utf-8", errors="replace")
    for name in PATIENT_NAMES:
        assert name not in everything


async def test_json_and_csv_formats_alone(scenario: Scenario, admin: User) -> None:
    c = await scenario.consultation("accepted")
    status, body, headers = await download(
        admin, **{"from": "2026-11-23", "to": "2026-11-23", "format": "json"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert [r["id"] for r in json.loads(body)["consultations"]] == [c.id]
    status, body, headers = await download(
        admin, **{"from": "2026-11-23", "to": "2026-11-23", "format": "csv"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    assert [r["id"] for r in supervision.read_csv(body)] == [c.id]
    assert 'filename="supervision-2026-11-23-2026-11-23.csv"' in headers["Content-Disposition"]


async def test_range_is_whole_beijing_days(
    scenario: Scenario, login_as: LoginAs, clock: ManualClock
) -> None:
    clock.current = BEIJING_MIDNIGHT - timedelta(seconds=1)  # 23:59:59 on the 23rd
    admin = await login_as("admin1")
    late = await scenario.consultation("requested")
    clock.current = BEIJING_MIDNIGHT  # 00:00:00 on the 24th, still the 23rd in UTC
    midnight = await scenario.consultation("requested")
    clock.advance(1)
    after = await scenario.consultation("requested")

    # ``to`` is included up to its last second, and the next day starts at 00:00.
    assert await ids_of(admin, "2026-11-23", "2026-11-23") == [late.id]
    assert await ids_of(admin, "2026-11-24", "2026-11-24") == [midnight.id, after.id]
    assert await ids_of(admin, "2026-11-23", "2026-11-24") == [late.id, midnight.id, after.id]
    assert await ids_of(admin, "2026-11-01", "2026-11-22") == []
    assert await ids_of(admin, "2026-11-25", "2026-11-30") == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"to": "2026-11-23"}, "from"),
        ({"from": "2026-11-23"}, "to"),
        ({"from": "23/11/2026", "to": "2026-11-23"}, "from"),
        ({"from": "2026-02-30", "to": "2026-03-01"}, "from"),
        ({"from": "0001-01-01", "to": "0001-01-02"}, "from"),
        ({"from": "9999-12-30", "to": "9999-12-31"}, "from"),
        ({"from": "2026-11-01", "to": "+2026-11-30"}, "to"),
        ({"from": "2026-11-24", "to": "2026-11-23"}, "to"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),
        ({"from": "2026-11-01", "to": "2026-11-23", "format": "xlsx"}, "format"),
    ],
)
async def test_bad_ranges_name_the_field(admin: User, query: dict[str, str], field: str) -> None:
    status, body, _ = await download(admin, **query)
    assert status == 400
    error = json.loads(body)["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == [field]


async def test_a_full_year_is_one_export(admin: User) -> None:
    status, _, _ = await download(admin, **{"from": "2024-01-01", "to": "2024-12-31"})
    assert status == 200


@pytest.mark.parametrize("username", ["clinic1", "cardio1", "review1"])
async def test_other_roles_are_refused_and_audited(
    login_as: LoginAs, app: web.Application, username: str
) -> None:
    user = await login_as(username)
    status, body, _ = await download(user, **{"from": "2026-11-01", "to": "2026-11-30"})
    assert status == 403
    assert json.loads(body)["error"]["code"] == "role_forbidden"
    denied = await audit_entries(app, "supervision_export.denied")
    assert [(e["actor_id"], e["object_id"]) for e in denied] == [
        (user.account["id"], "2026-11-01..2026-11-30")
    ]
    assert await audit_entries(app, "supervision.export") == []
    # The page sends them home.
    resp = await user.client.get("/supervision", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/"


async def test_every_export_is_audited(
    scenario: Scenario, app: web.Application, admin: User
) -> None:
    await scenario.consultation("signed")
    status, _, headers = await download(admin, **{"from": "2026-11-01", "to": "2026-11-30"})
    assert status == 200
    status, _, _ = await download(
        admin, **{"from": "2026-11-23", "to": "2026-11-23", "format": "csv"}
    )
    assert status == 200
    entries = await audit_entries(app, "supervision.export")
    assert len(entries) == 2
    first = entries[0]
    assert first["actor_id"] == admin.account["id"]
    assert first["object_id"] == headers["X-Export-Id"]
    assert first["detail"]["range_from"] == "2026-11-01"
    assert first["detail"]["range_to"] == "2026-11-30"
    assert first["detail"]["count"] == 1
    assert first["detail"]["format"] == "zip"
    assert first["detail"]["manifest_sha256"] == headers["X-Manifest-SHA256"]
    assert entries[1]["detail"]["format"] == "csv"


async def test_coordinator_exports_their_hospital_only(
    scenario: Scenario, app: web.Application, login_as: LoginAs, clock: ManualClock
) -> None:
    ours = await scenario.consultation("requested")
    coord = await login_as("coord1")

    def elsewhere(conn: sa.Connection) -> str:
        # A consultation asked of another hospital on the same server.
        other = store.add_institution(
            conn, name="市中心医院", kind="specialist_hospital", region="市区"
        )
        dept = store.add_department(conn, institution_id=other, code="neuro", name="神经内科")
        mine = store.get_consultation(conn, ours.id)
        assert mine is not None
        values = {
            k: getattr(mine, k)
            for k in ("patient_id", "requesting_institution_id", "requested_by", "urgency")
        }
        return store.add_consultation(
            conn,
            **values,
            department_id=dept,
            consulted_institution_id=other,
            reason="头痛",
            question="?",
            created_at=clock.now(),
        )

    theirs = await app[DB].run_write(elsewhere)
    files = await export_zip(coord, "2026-11-23", "2026-11-23")
    doc = json.loads(files["consultations.json"])
    assert [c["id"] for c in doc["consultations"]] == [ours.id]
    assert doc["scope"]["consulted_institution"]["name"] == "省人民医院"
    admin = await login_as("admin1")
    assert sorted(await ids_of(admin, "2026-11-23", "2026-11-23")) == sorted([ours.id, theirs])


async def test_a_tampered_archive_fails_verification(
    scenario: Scenario, admin: User, tmp_path: Path
) -> None:
    await scenario.consultation("signed")
    files = await export_zip(admin, "2026-11-23", "2026-11-23")

    def archive(changed: dict[str, bytes]) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for name, data in (files | changed).items():
                z.writestr(name, data)
        return out.getvalue()

    assert supervision_archive.verify_zip(archive({})).ok
    csv_text = files["consultations.csv"].replace(b",signed,", b",referred,")
    assert csv_text != files["consultations.csv"]
    broken = supervision_archive.verify_zip(archive({"consultations.csv": csv_text}))
    assert broken.problems == [
        "consultations.csv does not match its size and SHA-256 in the manifest"
    ]
    manifest = json.loads(files["manifest.json"])
    manifest["count"] = 0
    forged = supervision_archive.verify_zip(
        archive({"manifest.json": json.dumps(manifest).encode()})
    )
    assert "the signature does not match manifest.json" in forged.problems
    # Signed by another key than the one the platform registered.
    other = supervision_archive.SigningKey.load_or_create(tmp_path / "other.pem")
    wrong = supervision_archive.verify_zip(archive({}), expected_key=other.public_pem)
    assert not wrong.ok

    # What the README tells the platform to run, without this software.
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    openssl = shutil.which("openssl")
    assert openssl is not None, "Debian's openssl is needed (the README's check uses it)"
    proc = await asyncio.create_subprocess_exec(
        *(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", "signing-key.pem", "-rawin"),
        *("-in", "manifest.json", "-sigfile", "manifest.json.sig"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert b"Signature Verified Successfully" in out


async def test_the_page_counts_and_links(scenario: Scenario, login_as: LoginAs) -> None:
    await scenario.consultation("signed")
    await scenario.consultation("requested")
    coord = await login_as("coord1")
    resp = await coord.client.get("/supervision?from=2026-11-01&to=2026-11-30")
    assert resp.status == 200
    html = await resp.text()
    assert "监管数据导出" in html
    assert '<strong id="sv-count">2</strong>' in html
    assert "/api/supervision/export?from=2026-11-01&amp;to=2026-11-30&amp;format=zip" in html
    assert "sha256:" in html
    resp = await coord.client.get("/supervision?from=2026-11-30&to=2026-11-01")
    html = await resp.text()
    assert 'id="sv-error"' in html
    assert 'id="summary"' not in html


def test_the_field_list_is_one_list() -> None:
    """The README's table, the schema and the CSV header name the same fields, in order."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The supervision export", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| ")]
    documented = [r[2].strip().strip("`") for r in rows[1:]]  # after the head
    assert [r[1].strip() for r in rows[1:]] == [str(i + 1) for i in range(len(documented))]
    assert documented == list(supervision.FIELD_NAMES)
    item = supervision.schema()["$defs"]["consultation"]
    assert list(item["properties"]) == list(supervision.FIELD_NAMES)
    assert item["required"] == list(supervision.FIELD_NAMES)
    assert supervision.schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
