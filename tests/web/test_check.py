"""``teleconsult check`` against real parts: a database, disks, a coturn, certificates."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from records.db import Database
from web.check import Check, exit_code, run_checks
from web.settings import Secret

from ..conftest import make_settings
from ..ports import free_port
from ..requirements import require

ROOT = Path(__file__).parents[2]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def migrated(url: str) -> None:
    db = Database(url)
    try:
        await db.upgrade()
    finally:
        await db.close()


async def test_an_unmigrated_database_fails_and_says_what_to_run(
    tmp_path: Path, empty_database: str, on_postgres: bool
) -> None:
    settings = make_settings(tmp_path, database_url=empty_database)
    before = by_name(await run_checks(settings))
    assert before["database"].verdict == "fail"
    assert "teleconsult db upgrade" in before["database"].detail
    assert exit_code(list(before.values())) == 1

    await migrated(empty_database)
    after = by_name(await run_checks(settings))
    assert after["database"].verdict == "ok"
    assert after["recordings"].verdict == "ok"
    assert after["documents"].verdict == "ok"
    if on_postgres:
        # The connection budget and the database server's clock are looked at.
        assert "max_connections" in after["database connections"].detail
        assert after["clock"].verdict == "ok", after["clock"]
    # Warnings (no TURN, no ClamAV, no encryption...) do not fail the deployment.
    assert exit_code(list(after.values())) == 0


async def test_an_unreachable_database_fails(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url="postgresql+asyncpg://x@127.0.0.1:1/none")
    [database] = [c for c in await run_checks(settings) if c.name == "database"]
    assert database.verdict == "fail" and "cannot connect" in database.detail


async def test_a_recording_directory_that_cannot_be_written_or_is_nearly_full_fails(
    tmp_path: Path, empty_database: str
) -> None:
    await migrated(empty_database)
    block(tmp_path / "recordings")
    checks = by_name(await run_checks(make_settings(tmp_path, database_url=empty_database)))
    assert checks["recordings"].verdict == "fail"
    assert "not writable" in checks["recordings"].detail
    assert checks["documents"].verdict == "ok"

    full = by_name(
        await run_checks(
            make_settings(
                tmp_path / "other", database_url=empty_database, readiness_min_free_mb=10**9
            )
        )
    )
    assert full["recordings"].verdict == "fail"
    assert "low disk space" in full["recordings"].detail


def block(path: Path) -> None:
    path.write_text("a file where a directory should be")


def certificate(directory: Path, *, days: float, other_key: bool = False) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "consult.example.org")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    if other_key:
        key = ec.generate_private_key(ec.SECP256R1())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize(
    ("days", "other_key", "verdict", "says"),
    [
        (200, False, "ok", "valid until"),
        (10, False, "warn", "renew it"),
        (-1, False, "fail", "expired on"),
        (200, True, "fail", "is not the key of"),
    ],
)
async def test_the_certificate_is_read_matched_to_its_key_and_its_expiry_reported(
    tmp_path: Path, empty_database: str, days: float, other_key: bool, verdict: str, says: str
) -> None:
    cert, key = certificate(tmp_path / "tls", days=days, other_key=other_key)
    settings = make_settings(tmp_path, database_url=empty_database, tls_cert=cert, tls_key=key)
    checks = by_name(await run_checks(settings))
    assert checks["certificate"].verdict == verdict
    assert says in checks["certificate"].detail


async def test_a_clamd_that_does_not_answer_fails(tmp_path: Path, empty_database: str) -> None:
    settings = make_settings(
        tmp_path, database_url=empty_database, clamav_socket=tmp_path / "no-clamd.sock"
    )
    checks = by_name(await run_checks(settings))
    assert checks["clamav"].verdict == "fail"


# -- TURN: a real coturn on loopback, with the REST-API shared secret ----------------


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[tuple[int, str]]:
    turnserver = shutil.which("turnserver")
    require(turnserver is not None, "turnserver is missing (apt-get install coturn)")
    port, secret = free_port(), secrets.token_hex(16)
    relay = free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [
            turnserver,
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            f"--min-port={relay}",
            f"--max-port={relay + 20}",
            "--use-auth-secret",
            f"--static-auth-secret={secret}",
            "--realm=teleconsult.test",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--log-file=stdout",
            f"--pidfile={tmp_path / 'turnserver.pid'}",
            f"--userdb={tmp_path / 'turndb'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not accepts(port):  # ready when its TCP listener accepts
            assert process.poll() is None, "coturn exited"
            assert time.monotonic() < deadline, "coturn did not start"
            time.sleep(0.05)
        yield port, secret
    finally:
        process.terminate()
        process.wait(timeout=10)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_turn_is_tried_by_allocating_with_the_credentials_browsers_get(
    tmp_path: Path, empty_database: str, coturn: tuple[int, str], transport: str
) -> None:
    port, secret = coturn
    url = f"turn:127.0.0.1:{port}?transport={transport}"
    good = make_settings(
        tmp_path, database_url=empty_database, turn_urls=(url,), turn_secret=Secret(secret)
    )
    [ok] = [c for c in await run_checks(good) if c.name.startswith("turn")]
    assert ok.verdict == "ok", ok
    assert ok.detail.startswith("allocated a relay at 127.0.0.1:")

    wrong = make_settings(
        tmp_path, database_url=empty_database, turn_urls=(url,), turn_secret=Secret("not-it")
    )
    [refused] = [c for c in await run_checks(wrong) if c.name.startswith("turn")]
    assert refused.verdict == "fail"
    assert "401" in refused.detail and "static-auth-secret" in refused.detail


async def test_a_turn_server_that_does_not_answer_fails(
    tmp_path: Path, empty_database: str
) -> None:
    url = f"turn:127.0.0.1:{free_port()}?transport=tcp"
    settings = make_settings(
        tmp_path, database_url=empty_database, turn_urls=(url,), turn_secret=Secret("s")
    )
    [turn] = [c for c in await run_checks(settings) if c.name.startswith("turn")]
    assert turn.verdict == "fail"


def test_the_command_prints_each_verdict_and_exits_1_on_a_failure(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "TELECONSULT_DATA_DIR": str(tmp_path),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - this interpreter, our own module
            [sys.executable, "-m", "web.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = run("check")
    assert first.returncode == 1, first.stderr
    assert first.stdout.splitlines()[0].startswith("FAIL  database")
    assert run("db", "upgrade").returncode == 0
    second = run("check", "--json")
    assert second.returncode == 0, second.stdout
    verdicts = {c["name"]: c["verdict"] for c in json.loads(second.stdout)}
    assert verdicts["database"] == "ok" and verdicts["recordings"] == "ok"
    assert set(verdicts.values()) <= {"ok", "warn"}


async def test_redis_is_checked_when_several_processes_share_it(
    tmp_path: Path, demo_database: str, redis_server: Any
) -> None:
    alone = by_name(await run_checks(make_settings(tmp_path, database_url=demo_database)))
    assert alone["redis"].verdict == "ok" and "no redis_url" in alone["redis"].detail
    shared = make_settings(tmp_path, database_url=demo_database, redis_url=redis_server.url)
    found = by_name(await run_checks(shared))["redis"]
    assert found.verdict == "ok", found
    assert found.detail.startswith("Redis 7.") and "web process(es)" in found.detail
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    secret = Secret(f"redis://:hunter2@127.0.0.1:{closed}/0")
    away = by_name(
        await run_checks(make_settings(tmp_path, database_url=demo_database, redis_url=secret))
    )
    assert away["redis"].verdict == "fail"
    assert f"127.0.0.1:{closed}" in away["redis"].detail and "hunter2" not in away["redis"].detail
