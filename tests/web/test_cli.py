"""The ``teleconsult`` command, run as a user would: in its own process."""

from __future__ import annotations

import gc
import http.client
import json
import queue
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web

from web.cli import GC_YOUNG_THRESHOLD, tune_gc

from ..ports import free_port
from ..serverproc import server_env

ROOT = Path(__file__).resolve().parents[2]
DB_NAME = "teleconsult.sqlite3"
TIMEOUT = 60.0  # generous bound for a slow machine; never waited out on success


def env_for(data_dir: Path) -> dict[str, str]:
    return {**server_env(data_dir), "PYTHONPATH": str(ROOT)}


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command, fixed arguments
        [sys.executable, "-m", "web.cli", *args],
        cwd=ROOT,
        env=env_for(data_dir),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="session")
def cli_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with a migrated database and the demo data, made by the CLI once.

    Two processes of the command (``db upgrade``, ``demo``) cost each test that
    needed the directory a few seconds of interpreter start-up; ``demo_dir``
    copies this one instead.
    """
    folder = tmp_path_factory.mktemp("cli-demo")
    upgraded = run(folder, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "up to date" in upgraded.stdout
    demo = run(folder, "demo")
    assert demo.returncode == 0, demo.stderr
    return folder


@pytest.fixture
def demo_dir(tmp_path: Path, cli_demo_dir: Path) -> Path:
    """This test's copy of ``cli_demo_dir``."""
    shutil.copytree(cli_demo_dir, tmp_path, dirs_exist_ok=True)
    return tmp_path


def sql(data_dir: Path, statement: str) -> None:
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        with conn:
            conn.execute(statement)
    finally:
        conn.close()


def test_db_upgrade_creates_the_database_and_is_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        result = run(tmp_path, "db", "upgrade")
        assert result.returncode == 0, result.stderr
        assert "database schema is up to date" in result.stdout
    assert (tmp_path / DB_NAME).is_file()


def test_demo_prints_the_logins_once(tmp_path: Path) -> None:
    first = run(tmp_path, "demo")
    assert first.returncode == 0, first.stderr
    assert "demo1234" in first.stdout
    for username in ("clinic1", "cardio1", "cardio_junior", "resp1", "coord1", "review1"):
        assert username in first.stdout
    assert "under 3 years of practice" in first.stdout

    again = run(tmp_path, "demo")
    assert again.returncode == 0, again.stderr
    assert "already present" in again.stdout
    assert "clinic1" not in again.stdout


def test_audit_verify_passes_on_an_untouched_log(demo_dir: Path) -> None:
    result = run(demo_dir, "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "intact" in result.stdout
    assert "BROKEN" not in result.stdout


def test_audit_verify_finds_an_edited_entry(demo_dir: Path) -> None:
    sql(demo_dir, """UPDATE audit_log SET detail = '{"accounts": 99}' WHERE seq = 1""")

    result = run(demo_dir, "audit", "verify")

    assert result.returncode == 1
    assert "BROKEN: entry 1:" in result.stdout
    assert "intact" not in result.stdout


def test_audit_verify_finds_a_removed_newest_entry(demo_dir: Path) -> None:
    sql(demo_dir, "DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)")

    result = run(demo_dir, "audit", "verify")

    assert result.returncode == 1
    assert "BROKEN:" in result.stdout
    assert "head" in result.stdout
    assert "intact" not in result.stdout


def test_audit_verify_finds_a_removed_middle_entry(demo_dir: Path) -> None:
    # The demo load writes a single entry: two real logins add two more.
    serve_and_login(demo_dir)
    sql(demo_dir, "DELETE FROM audit_log WHERE seq = 2")

    result = run(demo_dir, "audit", "verify")

    assert result.returncode == 1
    assert "BROKEN: entry 3:" in result.stdout
    assert "expected sequence 2" in result.stdout  # the gap is named


def request(port: int, method: str, path: str, body: object = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


class Server:
    """``teleconsult serve`` in a subprocess, with its output read on a thread."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
            [sys.executable, "-m", "web.cli", "serve", "--port", str(self.port), *args],
            cwd=ROOT,
            env=env_for(data_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for_line(self, text: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in: {''.join(self.output)}")

    def wait_until_listening(self) -> None:
        """Poll the port until it accepts a connection (bounded)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "".join(self.output)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"port {self.port} never opened")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(timeout=TIMEOUT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def serve_and_login(data_dir: Path) -> None:
    server = Server(data_dir)
    try:
        server.wait_for_line("teleconsult is running")
        server.wait_until_listening()
        for username in ("clinic1", "cardio1"):
            status, _ = request(
                server.port, "POST", "/api/session", {"username": username, "password": "demo1234"}
            )
            assert status == 200
    finally:
        assert server.stop() == 0


def test_serve_prints_its_url_answers_health_and_stops_cleanly(tmp_path: Path) -> None:
    server = Server(tmp_path, "--demo")
    try:
        server.wait_for_line("clinic1")  # --demo prints the logins first
        line = server.wait_for_line("teleconsult is running")
        assert f"http://localhost:{server.port}/" in line
        server.wait_until_listening()

        assert request(server.port, "GET", "/api/health") == (200, {"status": "ok"})
        status, spec = request(server.port, "GET", "/api/openapi.json")
        assert status == 200
        assert isinstance(spec, dict)
        assert "/api/health" in spec["paths"]
        status, body = request(server.port, "GET", "/api/patients")
        assert status == 401
        assert isinstance(body, dict)
        assert body["error"]["code"] == "unauthenticated"
    finally:
        code = server.stop()
    assert code == 0, "".join(server.output)


def test_recordings_verify_and_purge_commands(demo_dir: Path) -> None:
    # Nothing recorded yet: everything matches and nothing is old enough to purge.
    result = run(demo_dir, "recordings", "verify")
    assert result.returncode == 0, result.stderr
    assert "0 of 0 recordings match" in result.stdout
    result = run(demo_dir, "recordings", "purge")
    assert result.returncode == 0 and "0 recording(s) purged" in result.stdout
    result = run(demo_dir, "recordings", "purge", "--id", "0" * 32)
    assert result.returncode == 1 and "refused" in result.stdout


async def test_a_started_server_leaves_its_startup_objects_out_of_collections() -> None:
    # Full collections stop the event loop for as long as they walk every object:
    # what the server started with is frozen, and young collections are rarer.
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])  # CPython's default
        await tune_gc(web.Application())
        assert gc.get_freeze_count() > 10_000  # the modules and the app, at least
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        # A process that records has raised it further: not lowered again.
        gc.set_threshold(GC_YOUNG_THRESHOLD * 3, before[1], before[2])
        await tune_gc(web.Application())
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD * 3
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
