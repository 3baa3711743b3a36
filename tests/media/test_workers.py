"""Media workers: legs recorded in worker processes, placed, lost, repaired.

Real ``python -m media.worker`` processes started by the pool, real aiortc
senders (``sender.py``) on loopback; the files are reopened with PyAV.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from media.leg import LegResult, RecordingKey
from media.pool import WorkerPool
from web.app import create_app
from web.keys import RECORDING

from ..conftest import make_settings
from ..ports import free_port
from ..senderproc import from_host, start_sender
from ..serverproc import server_env
from .test_recorder import probe

pytestmark = pytest.mark.slow

SENDER = Path(__file__).with_name("sender.py")
ROOT = Path(__file__).parents[2]
TOKEN = secrets.token_urlsafe(16)
IN_FLIGHT = 3  # frames a sender may still have on the wire when it hangs up


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[WorkerPool]:
    p = WorkerPool(
        tmp_path / "recordings", local=2, host_addresses=["127.0.0.1"], keyframe_interval=2.0
    )
    await p.open()
    try:
        yield p
    finally:
        await p.close()


class Sender:
    """One sender process feeding one leg."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, pool: WorkerPool, key: RecordingKey, *args: str) -> Sender:
        return cls(await start_sender(from_host(pool, key), SENDER, *args))

    async def next(self) -> dict[str, Any]:
        assert self.proc.stdout
        async with asyncio.timeout(60):
            line = await self.proc.stdout.readline()
        assert line, "the sender ended early"
        message: dict[str, Any] = json.loads(line)
        return message

    async def sent(self) -> dict[str, Any]:
        while "sent" not in (message := await self.next()):
            pass
        assert await self.proc.wait() == 0
        result: dict[str, Any] = message["sent"]
        return result

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def test_each_consultation_goes_to_the_least_loaded_worker_and_its_legs_stay_together(
    pool: WorkerPool,
) -> None:
    a1 = RecordingKey("a" * 32, "p1")
    a2 = RecordingKey("a" * 32, "p2")
    b1 = RecordingKey("b" * 32, "p1")
    senders = [await Sender.start(pool, key, "--seconds", "4") for key in (a1, a2, b1)]
    try:
        where = {key: pool.worker_of(key) for key in (a1, a2, b1)}
        assert all(w is not None and w.alive for w in where.values())
        # One consultation's legs share a worker (its relay forwards between them);
        # the next consultation goes to the other, empty worker.
        assert where[a1].name == where[a2].name  # type: ignore[union-attr]
        assert where[b1].name != where[a1].name  # type: ignore[union-attr]
        loads = {load.name: load.legs for load in pool.loads()}
        assert sorted(loads.values()) == [1, 2]
        pids = {load.pid for load in pool.loads()}
        assert os.getpid() not in pids and None not in pids and len(pids) == 2
        sents = [await s.sent() for s in senders]
    finally:
        for s in senders:
            await s.kill()
    for key, sent in zip((a1, a2, b1), sents, strict=True):
        result = await pool.stop(key)
        assert result is not None and result.file is not None, result
        assert result.file.path.parent == pool.directory / key.consultation_id
        info = probe(result.file.path)
        # Everything sent is in the file, but for what was in flight when the
        # sender hung up (0.1 s at 30 fps).
        assert info["video_frames"] >= sent["video"] - IN_FLIGHT, (info, sent)
        assert result.file.sha256 and result.file.size == result.file.path.stat().st_size
    assert pool.legs == {}
    assert [load.legs for load in pool.loads()] == [0, 0]


async def test_a_killed_worker_s_legs_are_reported_repaired_and_the_next_part_lands_elsewhere(
    pool: WorkerPool,
) -> None:
    ended: asyncio.Queue[LegResult] = asyncio.Queue()
    pool.on_finished = ended.put_nowait
    key = RecordingKey("c" * 32, "p" * 32)
    sender = await Sender.start(pool, key, "--seconds", "30", "--progress")
    try:
        while (await sender.next()).get("progress", 0) < 3:
            pass
        victim = pool.worker_of(key)
        assert victim is not None and victim.pid is not None
        partial = pool.leg_file(key).path
        assert partial.name.endswith(".partial") and partial.exists()
        os.kill(victim.pid, signal.SIGKILL)
        async with asyncio.timeout(30):
            result = await ended.get()
    finally:
        await sender.kill()
    # The leg is reported as ended by itself, with the file repaired as after a crash.
    assert result.key == key
    assert result.error is not None and "media worker stopped" in result.error
    assert result.file is not None and result.file.path.exists()
    assert not partial.exists()
    info = probe(result.file.path)
    # 3 s were sent before the kill; what the writer had not flushed yet is
    # lost with the process (as in a crash of the whole server).
    assert info["video_frames"] >= 45 and info["duration"] >= 1.5, info
    assert result.first_media_offset is not None
    # The service takes the result (stop) and forgets the leg.
    assert await pool.stop(key) == result
    assert key not in pool.legs

    # The page offers again: part 2 of the same participant lands on a live
    # worker, not the killed process, and records.
    part2 = RecordingKey(key.consultation_id, key.participant_id, 2)
    sender = await Sender.start(pool, part2, "--seconds", "3")
    try:
        now_on = pool.worker_of(part2)
        assert now_on is not None and now_on.alive and now_on.pid != victim.pid
        sent = await sender.sent()
    finally:
        await sender.kill()
    second = await pool.stop(part2)
    assert second is not None and second.file is not None, second
    assert second.file.path.name.startswith(f"{key.participant_id}-part2")
    assert probe(second.file.path)["video_frames"] >= sent["video"] - IN_FLIGHT
    # The killed worker was started again: both slots run.
    async with asyncio.timeout(30):
        await pool.workers.all_running()
    assert victim.pid not in {load.pid for load in pool.loads()}


async def test_a_remote_worker_asks_for_its_token_records_and_exits_with_its_web_process(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = server_env(tmp_path, recorder_addresses="127.0.0.1", media_worker_token=TOKEN)
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "web.cli",
            "media-worker",
            "--listen",
            f"127.0.0.1:{port}",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout
    try:
        async with asyncio.timeout(60):
            ready = json.loads(await proc.stdout.readline())
        assert ready["ready"] == f"127.0.0.1:{port}"
        # Without the token: the connection is closed at once.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b'{"token": "guess"}\n{"id": 1, "op": "counts"}\n')
        async with asyncio.timeout(10):
            assert await reader.read() == b""
        writer.close()

        pool = WorkerPool(tmp_path / "recordings", addresses=[f"127.0.0.1:{port}"], token=TOKEN)
        await pool.open()
        try:
            assert [(w.name, w.alive) for w in pool.loads()] == [(f"127.0.0.1:{port}", True)]
            key = RecordingKey("e" * 32, "p")
            sender = await Sender.start(pool, key, "--seconds", "2")
            try:
                sent = await sender.sent()
            finally:
                await sender.kill()
            result = await pool.stop(key)
        finally:
            await pool.close()
        assert result is not None and result.file is not None, result
        assert result.file.path.parent == tmp_path / "recordings" / key.consultation_id
        assert probe(result.file.path)["video_frames"] >= sent["video"] - IN_FLIGHT
        # Its web process went: the worker exits (systemd starts it again).
        async with asyncio.timeout(30):
            assert await proc.wait() == 3
        # An orderly end (every leg stopped first) is not a warning in its log.
        lines = log.read_text().splitlines()
        assert any("controller closed the connection" in line for line in lines), lines
        assert not [line for line in lines if "controller gone" in line], lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_app_starts_its_workers_shows_them_and_stops_them(
    tmp_path: Path, demo_database: str
) -> None:
    settings = make_settings(tmp_path, database_url=demo_database, media_workers=2)
    app = create_app(settings)
    async with TestClient(TestServer(app)) as client:
        pool = app[RECORDING].recorder
        assert isinstance(pool, WorkerPool)
        pids = [load.pid for load in pool.loads()]
        resp = await client.get("/metrics")
        text = await resp.text()
        found = {
            (s.name, s.labels.get("worker"), s.labels.get("pid")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        for i, pid in enumerate(pids, start=1):
            assert found[("teleconsult_recording_legs", f"local-{i}", None)] == 0
            assert found[("teleconsult_media_worker_up", f"local-{i}", str(pid))] == 1
        resp = await client.get("/readyz")
        assert (await resp.json())["checks"]["media_workers"] == {
            "ok": True,
            "running": 2,
            "of": 2,
        }
        processes = [load.pid for load in pool.loads() if load.pid]
    # The app's shutdown ends its workers.
    assert [pid for pid in processes if _running(pid)] == []


def _running(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(("video_fec", "hold_max_ms"), [(True, 600), (False, 0)])
async def test_a_worker_answers_and_relays_as_configured(
    tmp_path: Path, video_fec: bool, hold_max_ms: int
) -> None:
    # ``video_fec`` and ``relay_hold_max_ms`` reach the worker processes
    # (``--no-video-fec``, ``--relay-hold-max-ms``): their answers to a
    # Chromium offer take RED and ULPFEC, or leave them out, and their relay
    # offers the playout-delay extension to a viewer, or does not.
    from datetime import UTC, datetime

    from media.hold import URI

    from .test_answer import with_red
    from .test_twcc import CHROME_OFFER

    pool = WorkerPool(
        tmp_path / "recordings",
        local=1,
        host_addresses=["127.0.0.1"],
        video_fec=video_fec,
        relay_hold_max_ms=hold_max_ms,
    )
    await pool.open()
    try:
        key = RecordingKey("d" * 32, "p1")
        answer = await pool.start(key, with_red(CHROME_OFFER), now=datetime.now(UTC))
        video = answer.split("\r\nm=video")[1]
        assert ("a=rtpmap:118 red/90000" in video) is video_fec
        assert "a=rtpmap:96 VP8/90000" in video
        relayed = (await pool.relay_offer(key, "viewer")).split("\r\nm=video")[1]
        assert (URI in relayed) is (hold_max_ms > 0)
        await pool.stop(key)
    finally:
        await pool.close()
