"""kill -9 of the server in the middle of a recorded call, then a restart.

The server runs as a real subprocess (``teleconsult serve``); a sender process is
the participant's recording leg, signaled through the real WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from datetime import datetime
from pathlib import Path

import aiohttp
import av
import pytest

from records import sealed

from ..ports import free_port
from ..scenario import over_http
from ..serverproc import server_env
from ..web.calls import connect, join

ROOT = Path(__file__).parents[2]
SENDER = Path(__file__).with_name("sender.py")


async def start_server(env: dict[str, str], base: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "web.cli",
        "serve",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(30), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(base + "/api/health") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)  # polling a port that is not open yet


@pytest.mark.slow
@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "encrypted"])
async def test_recordings_survive_kill_9_and_are_repaired_on_restart(
    tmp_path: Path, encrypted: bool
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    key = sealed.new_key()
    env = server_env(
        tmp_path,
        port=str(port),
        recorder_addresses="127.0.0.1",
        ice_allowed_networks="127.0.0.0/8",
        **({"encryption_key": key} if encrypted else {}),
    )
    keyring = sealed.Keyring([sealed.parse_key(key)]) if encrypted else None
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "web.cli",
        "demo",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await demo.wait() == 0
    server = await start_server(env, base)
    sender = None
    try:
        async with over_http(base) as scenario:
            c = await scenario.consultation("live", urgency="urgent")
            sock = await connect(c.clinic, origin=base)
            assert (await join(sock, c.id, tab="t1"))["type"] == "joined"
            sender = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SENDER),
                "--codec",
                "vp8",
                "--seconds",
                "30",
                "--progress",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
            )
            assert sender.stdin and sender.stdout
            offer = json.loads(await sender.stdout.readline())["offer"]
            await sock.send({"type": "rec_offer", "sdp": offer})
            answer = await sock.recv("rec_answer", "error")
            assert answer["type"] == "rec_answer", answer
            sender.stdin.write((json.dumps({"answer": answer["sdp"]}) + "\n").encode())
            await sender.stdin.drain()
            assert json.loads(await sender.stdout.readline()) == {"connected": True}
            sent = 0.0
            async with asyncio.timeout(30):
                while sent < 6.0:
                    sent = json.loads(await sender.stdout.readline())["progress"]

            server.send_signal(signal.SIGKILL)
            await server.wait()
            partials = list((tmp_path / "recordings").rglob("*.partial"))
            assert len(partials) == 1 and partials[0].stat().st_size > 0

            server = await start_server(env, base)  # repairs before it serves
            db = sqlite3.connect(tmp_path / "teleconsult.sqlite3")
            [(status, rel, duration_ms, sha, offset_ms, started_at)] = db.execute(
                "SELECT status, path, duration_ms, sha256, offset_ms, started_at FROM recordings"
            ).fetchall()
            [(live_at,)] = db.execute(
                "SELECT at FROM consultation_events WHERE kind = 'live'"
            ).fetchall()
            db.close()
            assert status == "recovered"
            assert not list((tmp_path / "recordings").rglob("*.partial"))
            path = tmp_path / "recordings" / rel
            # Repaired, then sealed: PyAV reads it through the decrypting reader.
            assert sealed.is_sealed(path) is encrypted
            with sealed.open_plain(path, keyring) as fh, av.open(fh) as container:
                video = list(container.decode(video=0))
            with sealed.open_plain(path, keyring) as fh, av.open(fh) as container:
                audio = list(container.decode(audio=0))
            assert sealed.plain_sha256(path, keyring) == sha
            verify = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "web.cli",
                "recordings",
                "verify",
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await verify.communicate()
            assert verify.returncode == 0 and b"1 of 1 recordings match" in out, out
            covered = float(video[-1].time)
            assert covered >= sent - 2.0, (covered, sent)
            assert float(audio[-1].time) >= sent - 2.0
            assert abs(duration_ms / 1000 - covered) < 1.0
            assert len(sha) == 64
            # The repaired part keeps its place on the session's clock: its leg
            # started this long after the call went live, and its first media
            # arrived within a second of that.
            answered = datetime.fromisoformat(started_at) - datetime.fromisoformat(live_at)
            assert offset_ms is not None
            assert 0 <= offset_ms - answered.total_seconds() * 1000 < 1500, (offset_ms, answered)

            # The clinic doctor's session survived in the database.
            status, timeline = await c.clinic.get(f"{c.url}/timeline")
            assert status == 200, timeline
            kinds = [e["kind"] for e in timeline["events"]]
            assert "recording_recovered" in kinds
            # The call was live: its participant was not recorded from the crash on.
            assert "recording_interrupted" in kinds
    finally:
        for proc in (sender, server):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
