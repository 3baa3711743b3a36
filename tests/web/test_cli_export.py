"""``teleconsult export supervision`` and ``export verify``, run as a user would."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from records import store
from records.db import Database
from web.settings import Settings

from .test_cli import DB_NAME, cli_demo_dir, demo_dir, run

__all__ = ["cli_demo_dir", "demo_dir"]  # the fixtures, used by name

REQUESTED = datetime(2026, 3, 1, 1, 30, tzinfo=UTC)  # 09:30 on 1 March in Beijing


async def add_consultation(data_dir: Path) -> str:
    """One request from the demo clinic to the demo cardiology department."""
    db = Database(Settings(data_dir=data_dir).effective_database_url)

    def work(conn: sa.Connection) -> str:
        clinic1 = next(a for a in store.list_accounts(conn) if a.username == "clinic1")
        patient = store.list_patients(conn, clinic1.institution_id)[0]
        dept = next(d for d, _ in store.list_departments(conn) if d.code == "cardiology")
        return store.add_consultation(
            conn,
            patient_id=patient.id,
            requesting_institution_id=clinic1.institution_id,
            requested_by=clinic1.id,
            department_id=dept.id,
            consulted_institution_id=dept.institution_id,
            urgency="routine",
            reason="胸闷",
            question="是否需要转诊？",
            created_at=REQUESTED,
        )

    try:
        return await db.run_write(work)
    finally:
        await db.close()


async def test_export_and_verify_through_the_command(demo_dir: Path, tmp_path: Path) -> None:
    cid = await add_consultation(demo_dir)
    out = tmp_path / "march.zip"

    made = run(demo_dir, "export", "supervision", "--from", "2026-03-01", "--to", "2026-03-31",
               "--out", str(out))  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "1 consultation(s) from 2026-03-01 to 2026-03-31" in made.stdout
    with zipfile.ZipFile(out) as z:
        doc = json.loads(z.read("consultations.json"))
    assert [c["id"] for c in doc["consultations"]] == [cid]
    assert doc["consultations"][0]["requested_at"] == "2026-03-01T09:30:00+08:00"
    assert doc["scope"]["consulted_institution"] is None

    checked = run(demo_dir, "export", "verify", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "intact, signed by key sha256:" in checked.stdout
    key = demo_dir / "signing" / "supervision-ed25519.pem"
    assert key.stat().st_mode & 0o077 == 0  # the private key is the owner's alone

    # Against the key the platform registered (the server's public key).
    public = tmp_path / "registered.pem"
    with zipfile.ZipFile(out) as z:
        public.write_bytes(z.read("signing-key.pem"))
    trusted = run(demo_dir, "export", "verify", str(out), "--public-key", str(public))
    assert trusted.returncode == 0, trusted.stdout

    # One changed byte in the CSV: the manifest no longer vouches for it.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(out) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "consultations.csv":
                data = data.replace(b"routine", b"urgent!")
            dst.writestr(name, data)
    broken = run(demo_dir, "export", "verify", str(tampered))
    assert broken.returncode == 1
    assert "BROKEN: consultations.csv does not match" in broken.stdout

    # The export is in the audit log, without an account (the server's operator).
    conn = sqlite3.connect(demo_dir / DB_NAME)
    try:
        rows = conn.execute(
            "SELECT actor_id, detail FROM audit_log WHERE action = 'supervision.export'"
        ).fetchall()
    finally:
        conn.close()
    assert len(rows) == 1
    actor_id, detail = rows[0]
    assert actor_id is None
    assert json.loads(detail)["count"] == 1
    assert json.loads(detail)["via"] == "command line"
    assert "audit chain intact" in run(demo_dir, "audit", "verify").stdout


def test_a_bad_range_is_refused_naming_the_option(demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.zip"
    result = run(demo_dir, "export", "supervision", "--from", "2026-03-31", "--to", "2026-03-01",
                 "--out", str(out))  # fmt: skip
    assert result.returncode == 2
    assert "--to" in result.stderr
    assert not out.exists()
