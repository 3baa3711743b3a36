"""Operations' view: ``/metrics``, ``/livez``, ``/readyz``, log lines naming their consultation."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from media.packets import PacketWriter
from records import logcontext
from web import logs
from web.app import create_app
from web.keys import RECORDING

from ..conftest import ManualClock, make_settings
from ..patience import patient
from ..scenario import Scenario
from .calls import LEG_END_TIMEOUT
from .test_recording import leg

Client = TestClient[Any, Any]
TOKEN = "s3cret-t0ken"  # noqa: S105


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


async def scrape(client: Client, **headers: str) -> str:
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return await resp.text()


async def test_liveness_and_readiness_answer_without_login(anon: Client) -> None:
    resp = await anon.get("/livez")
    assert (resp.status, await resp.json()) == (200, {"status": "alive"})
    resp = await anon.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["recordings"]["ok"] is True
    assert body["checks"]["recordings"]["free_mb"] > 0


async def test_not_ready_names_the_recording_directory_that_cannot_be_written(
    anon: Client, app: web.Application
) -> None:
    directory: Path = app[RECORDING].recorder.directory
    block_with_a_file(directory)
    try:
        resp = await anon.get("/readyz")
        body = await resp.json()
        assert resp.status == 503, body
        assert body["status"] == "not_ready"
        assert body["checks"]["recordings"]["ok"] is False
        assert "not writable" in body["checks"]["recordings"]["error"]
        assert body["checks"]["database"]["ok"] is True  # only the failing check fails
    finally:
        os.unlink(directory)
    assert (await anon.get("/readyz")).status == 200


def block_with_a_file(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.write_text("a file where the directory should be")


async def test_not_ready_when_the_recording_disk_is_nearly_full(
    tmp_path: Path, demo_database: str, clock: ManualClock
) -> None:
    settings = make_settings(tmp_path, database_url=demo_database, readiness_min_free_mb=10**9)
    async with TestClient(TestServer(create_app(settings, clock=clock))) as client:
        resp = await client.get("/readyz")
        body = await resp.json()
    assert resp.status == 503
    assert body["checks"]["recordings"] == {
        "ok": False,
        "free_mb": body["checks"]["recordings"]["free_mb"],
        "error": "low disk space",
    }


async def test_http_latency_is_counted_by_route_template_not_by_raw_path(
    scenario: Scenario, anon: Client
) -> None:
    c = await scenario.consultation("requested")
    for _ in range(3):
        status, _ = await c.clinic.get(f"/api/consultations/{c.id}")
        assert status == 200
    assert (await anon.get("/no/such/page/12345")).status == 404
    text = await scrape(anon)

    count = value(
        text,
        "teleconsult_http_request_duration_seconds_count",
        method="GET",
        route="/api/consultations/{consultation_id}",
        status="2xx",
    )
    assert count == 3
    assert c.id not in text  # ids never become label values of the HTTP series
    assert "/no/such/page" not in text
    assert (
        value(
            text,
            "teleconsult_http_request_duration_seconds_count",
            method="GET",
            route="unmatched",
            status="4xx",
        )
        == 1
    )


async def test_sockets_and_rooms_are_counted_while_open(scenario: Scenario, anon: Client) -> None:
    before = await scrape(anon)
    assert value(before, "teleconsult_sockets") == 0
    assert value(before, "teleconsult_rooms") == 0
    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    during = await scrape(anon)
    assert value(during, "teleconsult_sockets") == len(c.sockets) == 2
    assert value(during, "teleconsult_rooms") == 1


async def test_a_running_leg_shows_its_frames_and_the_worker_its_legs(
    scenario: Scenario, anon: Client, on_postgres: bool
) -> None:
    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    who = c.clinic.account["id"]
    ids = {"consultation_id": c.id, "participant_id": who, "part": "1"}
    async with leg(c.sockets["clinic1"], "--codec", "vp8", "--seconds", "4"):
        async with asyncio.timeout(patient(10)):
            while True:  # until the writer has written video (it waits for a keyframe)
                text = await scrape(anon)
                video = value(text, "teleconsult_leg_frames_written_total", kind="video", **ids)
                if video:
                    break
                await asyncio.sleep(0.1)
        assert value(text, "teleconsult_recording_legs", worker="in-process") == 1
        assert value(text, "teleconsult_leg_frames_lost_total", **ids) is not None
        assert (value(text, "teleconsult_recording_disk_free_bytes") or 0) > 0
        # SQLite's single writer is counted; PostgreSQL takes no lock here.
        waits = value(text, "teleconsult_db_write_lock_waits_total")
        assert waits == 0 if on_postgres else (waits or 0) > 0


@pytest.mark.parametrize("header", ["X-Forwarded-For", "X-Real-IP", "Forwarded"])
async def test_a_request_relayed_by_a_local_proxy_is_not_a_local_client(
    anon: Client, header: str
) -> None:
    resp = await anon.get("/metrics", headers={header: "203.0.113.7"})
    assert resp.status == 403
    assert "teleconsult_" not in await resp.text()


async def test_metrics_with_a_token_need_it(
    tmp_path: Path, demo_database: str, clock: ManualClock
) -> None:
    settings = make_settings(tmp_path, database_url=demo_database, metrics_token=TOKEN)
    async with TestClient(TestServer(create_app(settings, clock=clock))) as client:
        refused = await client.get("/metrics")
        assert refused.status == 403
        assert (await refused.json())["error"]["code"] == "forbidden"
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 403
        text = await scrape(client, Authorization=f"Bearer {TOKEN}")
    assert value(text, "teleconsult_sockets") == 0


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger's output, as the ``log_format = "json"`` handler writes it."""
    stream = io.StringIO()
    handler = logs.handler_for("json")
    handler.setStream(stream)  # type: ignore[attr-defined]
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_log_lines_of_a_recording_name_its_consultation(
    scenario: Scenario, json_log: io.StringIO
) -> None:
    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    sock = c.sockets["clinic1"]
    async with leg(sock, "--codec", "vp8", "--seconds", "2") as proc:
        assert await proc.wait() == 0
        # The leg ends by itself (the sender closed): the recorder logs it.
        assert (await c.sockets["cardio1"].recv("recording"))["state"] == "recording"
        ended = await c.sockets["cardio1"].recv("recording", within=LEG_END_TIMEOUT)
        assert ended["state"] == "interrupted"
    recorder_lines = [e for e in lines(json_log) if e["logger"].startswith("media.")]
    assert recorder_lines, lines(json_log)
    assert {e.get("consultation_id") for e in recorder_lines} == {c.id}
    for entry in recorder_lines:
        assert entry["time"].endswith("+00:00") and entry["level"] in {"INFO", "WARNING"}


def test_text_and_json_formats_carry_the_bound_consultation_into_tasks_and_threads() -> None:
    stream = io.StringIO()
    handler = logs.handler_for("text")
    handler.setStream(stream)  # type: ignore[attr-defined]
    log = logging.getLogger("tests.observability")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:

        async def main() -> None:
            with logcontext.bound("c-123"):
                task = asyncio.ensure_future(asyncio.sleep(0, result=None))
                log.info("in the handler")
                await asyncio.create_task(_log_later(log))
                await task
            log.info("after it")

        asyncio.run(main())
    finally:
        log.removeHandler(handler)
        log.propagate = True
    text = stream.getvalue().splitlines()
    assert text[0].endswith("tests.observability: [c=c-123] in the handler")
    assert text[1].endswith("tests.observability: [c=c-123] from a task")
    assert text[2].endswith("tests.observability: after it")


async def _log_later(log: logging.Logger) -> None:
    await asyncio.sleep(0)
    log.info("from a task")


def test_a_recording_writer_thread_logs_under_the_consultation_it_was_started_for(
    tmp_path: Path, json_log: io.StringIO
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with logcontext.bound("c-456"):
        writer = PacketWriter(blocker / "x.webm.partial", video_codec=None, audio=True, t0=0.0)
    # One Opus packet: arrival, audio, marker, sequence number, timestamp, payload.
    writer.keep((0.0, True, True, 0, 0, b"\xf8\xff\xfe"))
    stats = writer.close()
    assert stats.errors  # the file could not be opened: the thread said so
    [entry] = [e for e in lines(json_log) if e["logger"] == "media.packets"]
    assert entry["consultation_id"] == "c-456"
    assert entry["level"] == "ERROR" and "exception" in entry
