"""Encryption at rest through the real app and the real command: settings, HTTP, rotation."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from records import sealed
from web.settings import Secret, Settings, SettingsError

from ..conftest import DB_NAME, make_settings
from ..records.samples import LAB_REPORT, dicom, pdf
from ..scenario import Scenario
from .encryption import KEY
from .test_cli import ROOT, TIMEOUT, cli_demo_dir, demo_dir, env_for, run

__all__ = ["cli_demo_dir", "demo_dir"]


@pytest.fixture
def settings(tmp_path: Path, demo_database: str) -> Settings:
    return make_settings(tmp_path, database_url=demo_database, encryption_key=KEY)


async def upload(user: Any, patient_id: str, data: bytes) -> dict[str, Any]:
    resp = await user.client.post(
        f"/api/patients/{patient_id}/documents",
        data=data,
        headers={"X-CSRF-Token": user.csrf, "Content-Type": "application/octet-stream"},
    )
    body = await resp.json()
    assert resp.status == 201, body
    document: dict[str, Any] = body["document"]
    return document


async def test_encrypted_downloads_answer_like_plain_files(
    scenario: Scenario, settings: Settings
) -> None:
    clinic = await scenario.user("clinic1")
    data = (LAB_REPORT * 2000).encode()
    assert len(data) > 2 * sealed.CHUNK  # ranges across chunk boundaries
    doc = await upload(clinic, await scenario.patient(), data)
    url = doc["content_url"]

    full = await clinic.client.get(url)
    assert (full.status, await full.read()) == (200, data)
    etag = full.headers["ETag"]
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Cache-Control"] == "private, no-store"
    assert full.headers["X-Content-Type-Options"] == "nosniff"
    assert full.headers["Content-Type"] == "text/plain; charset=utf-8"

    edge = sealed.CHUNK - 3
    resp = await clinic.client.get(url, headers={"Range": f"bytes={edge}-{edge + 9}"})
    assert (resp.status, await resp.read()) == (206, data[edge : edge + 10])
    assert resp.headers["Content-Range"] == f"bytes {edge}-{edge + 9}/{len(data)}"
    # A player's open-ended range: the first chunk goes out on its own, then the rest.
    resp = await clinic.client.get(url, headers={"Range": f"bytes={edge}-"})
    assert (resp.status, await resp.read()) == (206, data[edge:])

    # If-Range with the current ETag: the range; with a stale one: the whole file.
    resp = await clinic.client.get(url, headers={"Range": "bytes=0-3", "If-Range": etag})
    assert (resp.status, await resp.read()) == (206, data[:4])
    resp = await clinic.client.get(url, headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert (resp.status, await resp.read()) == (200, data)
    resp = await clinic.client.get(url, headers={"If-None-Match": etag})
    assert resp.status == 304
    for bad in (f"bytes={len(data)}-", "bytes=0-1,5-6", "pages=1"):
        resp = await clinic.client.get(url, headers={"Range": bad})
        assert resp.status == 416, bad
        assert resp.headers["Content-Range"] == f"bytes */{len(data)}"


async def test_an_encrypted_dicom_preview_is_served(scenario: Scenario, settings: Settings) -> None:
    clinic = await scenario.user("clinic1")
    doc = await upload(clinic, await scenario.patient(), dicom())
    resp = await clinic.client.get(doc["preview_url"])
    body = await resp.read()
    assert resp.status == 200 and body.startswith(b"\x89PNG")
    stored = list((settings.data_dir / "files").rglob("*"))
    blobs = [p for p in stored if p.is_file()]
    assert len(blobs) == 2 and all(sealed.is_sealed(p) for p in blobs)


async def test_a_file_under_a_key_no_longer_configured_is_a_server_error(
    scenario: Scenario, settings: Settings
) -> None:
    clinic = await scenario.user("clinic1")
    doc = await upload(clinic, await scenario.patient(), pdf())
    path = next(p for p in (settings.data_dir / "files").rglob("*") if p.is_file())
    path.write_bytes(path.read_bytes()[:-1])  # cut short: nothing half-decrypted goes out
    resp = await clinic.client.get(doc["content_url"])
    assert resp.status == 500
    assert (await resp.json())["error"]["code"] == "internal"


def test_settings_for_encryption(tmp_path: Path) -> None:
    assert make_settings(tmp_path).keyring() is None
    ring = make_settings(tmp_path, encryption_key=KEY).keyring()
    assert ring is not None and ring.cipher == "aes-256-gcm" and len(ring.keys) == 1
    assert "Secret('***')" in repr(make_settings(tmp_path, encryption_key=KEY))
    assert str(KEY) not in repr(ring)
    older = sealed.new_key()
    ring = make_settings(tmp_path, encryption_key=Secret(f"{KEY},{older}")).keyring()
    assert ring is not None and ring.keys[1] == sealed.parse_key(older)

    key_file = tmp_path / "keys"
    key_file.write_text(f"# current\n{KEY}\n\n{older}  # retiring\n")
    key_file.chmod(0o600)
    ring = make_settings(tmp_path, encryption_key_file=key_file).keyring()
    assert ring is not None and len(ring.keys) == 2
    key_file.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        make_settings(tmp_path, encryption_key_file=key_file).keyring()

    with pytest.raises(SettingsError, match="not both"):
        make_settings(tmp_path, encryption_key=KEY, encryption_key_file=key_file)
    with pytest.raises(SettingsError, match="aes-256-gcm or sm4-gcm") as caught:
        make_settings(tmp_path, encryption_key=KEY, encryption_cipher="des")
    secret = Secret("bm90IGEga2V5IGF0IGFsbCwgYnV0IGNsb3Nl")
    with pytest.raises(SettingsError, match="32 bytes") as caught:
        make_settings(tmp_path, encryption_key=secret)
    assert str(secret) not in str(caught.value)
    env = {"TELECONSULT_ENCRYPTION_KEY": str(KEY), "TELECONSULT_ENCRYPTION_CIPHER": "sm4-gcm"}
    ring = Settings.from_env(env).keyring()
    assert ring is not None and ring.cipher == "sm4-gcm"


def cli(data_dir: Path, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_with(data_dir, {"TELECONSULT_ENCRYPTION_KEY": key}, *args)


def run_with(data_dir: Path, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command, fixed arguments
        [sys.executable, "-m", "web.cli", *args],
        cwd=ROOT,
        env={**env_for(data_dir), **extra},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def place(root: Path, data: bytes, keyring: sealed.Keyring | None) -> Path:
    sha = hashlib.sha256(data).hexdigest()
    path = root / "files" / sha[:2] / sha[2:4] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if keyring is not None:
        sealed.seal_file(path, keyring)
    return path


def test_keys_rotate_rewraps_encrypts_resumes_and_is_audited(demo_dir: Path) -> None:
    old, new = sealed.new_key(), sealed.new_key()
    old_ring = sealed.Keyring([sealed.parse_key(old)])
    new_ring = sealed.Keyring([sealed.parse_key(new)])
    doc = os.urandom(200_000)
    legacy = b"%PDF-1.4 stored before encryption was turned on"
    sealed_doc = place(demo_dir, doc, old_ring)
    plain_doc = place(demo_dir, legacy, None)
    rec_dir = demo_dir / "recordings" / ("c" * 32)
    rec_dir.mkdir(parents=True)
    video = os.urandom(300_000)
    rec = rec_dir / "p-part1.webm"
    rec.write_bytes(video)
    sealed.seal_file(rec, old_ring)
    live = rec_dir / "p-part2.webm.partial"  # a call still running: left alone
    live.write_bytes(b"\x1a\x45\xdf\xa3 live")

    generated = run_with(demo_dir, {}, "keys", "generate")
    assert generated.returncode == 0 and len(sealed.parse_key(generated.stdout)) == 32

    result = cli(demo_dir, f"{new},{old}", "keys", "rotate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 re-wrapped, 1 encrypted, 0 already current, 0 failed" in result.stdout
    assert "older keys may now be removed" in result.stdout
    for path, plain in ((sealed_doc, doc), (plain_doc, legacy), (rec, video)):
        assert sealed.plain_sha256(path, new_ring) == hashlib.sha256(plain).hexdigest()
        with pytest.raises(sealed.SealError, match="not configured"):
            sealed.open_plain(path, old_ring)
    assert live.read_bytes() == b"\x1a\x45\xdf\xa3 live"

    again = cli(demo_dir, new, "keys", "rotate")  # resumed or repeated: nothing left
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 re-wrapped, 0 encrypted, 3 already current" in again.stdout

    db = sqlite3.connect(demo_dir / DB_NAME)
    actions = [a for (a,) in db.execute("SELECT action FROM audit_log ORDER BY seq")]
    db.close()
    assert actions.count("file.rewrap") == 2 and actions.count("file.seal") == 1
    assert actions.count("keys.rotate") == 2
    verified = run(demo_dir, "audit", "verify")
    assert verified.returncode == 0, verified.stdout

    # A file under a key nobody configured: named, and the run fails.
    stray = place(demo_dir, b"under a lost key" * 10, sealed.Keyring([os.urandom(32)]))
    failed = cli(demo_dir, new, "keys", "rotate")
    assert failed.returncode == 1
    assert f"FAILED: files/{stray.relative_to(demo_dir / 'files')}" in failed.stdout
    assert "keep every old key" in failed.stdout


def test_keys_rotate_without_a_key_says_so(demo_dir: Path) -> None:
    result = run(demo_dir, "keys", "rotate")
    assert result.returncode == 1 and "encryption is off" in result.stdout
