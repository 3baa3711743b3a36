"""A media worker killed in the middle of a relayed, recorded call, in real Chromium.

The server runs as ``python -m web.cli serve`` with its default media workers
(one per core), inside the browsers' loopback-only network namespace (see
conftest.py), as in test_restart_browser.py. In a relayed call each page's
recording leg is also its uplink: killing the worker that carries the
consultation (SIGKILL) stops the picture and the recording; the pages are told,
offer their legs again, the legs land on a live worker as part 2, and the
picture comes back. The part the dead worker was writing is repaired and kept.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import DB_NAME
from ..scenario import Scenario
from ..serverproc import ServerProcess
from .conftest import NetNs, video_flowing
from .restarts import (
    account_id,
    back_in_call,
    frames_in,
    partials_written,
    recording,
    rows_of,
    serve_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timing]


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


@pytest.fixture(autouse=True)
def inside(netns: NetNs) -> Iterator[None]:
    """The whole test in the namespace: the server and its workers live there."""
    with netns.entered():
        yield


@pytest.fixture
async def server(tmp_path: Path, netns: NetNs, demo_database: str) -> AsyncIterator[ServerProcess]:
    """The server process with its default media workers and the relayed plane."""
    proc = serve_in(netns, tmp_path, demo_database)
    assert "TELECONSULT_MEDIA_WORKERS" not in proc.env  # the default: one per core
    await proc.start()
    try:
        yield proc
    finally:
        await proc.kill()


@pytest.fixture
def live_server(server: ServerProcess) -> str:
    return server.base


async def workers(base: str) -> dict[str, tuple[int, int | None, bool]]:
    """Each media worker's legs, pid and liveness, as ``/metrics`` says."""
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    legs: dict[str, int] = {}
    up: dict[str, tuple[int | None, bool]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "teleconsult_recording_legs":
                legs[sample.labels["worker"]] = int(sample.value)
            elif sample.name == "teleconsult_media_worker_up":
                pid = sample.labels["pid"]
                up[sample.labels["worker"]] = (int(pid) if pid else None, sample.value == 1)
    return {name: (legs[name], *up[name]) for name in legs}


async def test_killing_the_media_worker_resumes_the_call_and_records_a_numbered_part(
    open_as: Any, scenario: Scenario, server: ServerProcess, tmp_path: Path, demo_database: str
) -> None:
    url = demo_database or f"sqlite+aiosqlite:///{tmp_path / DB_NAME}"
    _, clinic, clinic_problems = await open_as("clinic1", locale="en")
    _, cardio, cardio_problems = await open_as("cardio1")
    pages = (clinic, cardio)
    before = await workers(server.base)
    assert len(before) == (os.cpu_count() or 1) >= 1
    assert all(alive and pid for _, pid, alive in before.values()), before
    # The workers are processes of their own, not the web process.
    assert server.proc is not None and server.proc.pid not in {p for _, p, _ in before.values()}

    cid = (await scenario.consultation("accepted")).id
    for page in pages:
        await page.goto(f"/consultations/{cid}/call")
    await asyncio.gather(*(recording(page) for page in pages))
    for page in pages:
        assert await page.evaluate("window.__call.mode()") == "relay"
        await page.locator('#rec-indicator[data-peers="2"]').wait_for()
        await video_flowing(page, 1, label="before")
    ids = {page: await account_id(page) for page in pages}
    await partials_written(tmp_path / "recordings", 2, 40_000)
    # Both legs of the consultation are on one worker.
    loaded = {name: w for name, w in (await workers(server.base)).items() if w[0]}
    assert [w[0] for w in loaded.values()] == [2], loaded
    ((victim_name, (_, victim_pid, _)),) = loaded.items()
    assert victim_pid is not None

    killed = time.monotonic()
    os.kill(victim_pid, signal.SIGKILL)
    # The pages are told (their indicator leaves "recording"), offer their legs
    # again, and the picture each receives through the server comes back.
    for page in pages:
        await page.locator('#rec-indicator:not([data-state="recording"])').wait_for(timeout=15_000)
    for page in pages:
        await recording(page, timeout_ms=60_000)
        await page.locator('#rec-indicator[data-peers="2"]').wait_for(timeout=30_000)
        await back_in_call(page)
        await video_flowing(page, 1, label="after", timeout_ms=60_000)
    resumed = time.monotonic() - killed
    print(f"picture and recording back {resumed:.1f} s after the worker was killed")

    after = await workers(server.base)
    carrying = [(name, pid) for name, (legs, pid, alive) in after.items() if legs and alive]
    assert len(carrying) == 1 and after[carrying[0][0]][0] == 2, after
    assert carrying[0][1] != victim_pid, (victim_name, victim_pid, after)

    # The records: part 1 repaired from what the dead worker wrote, part 2 running.
    rows = await rows_of(url)
    for page in pages:
        legs = [r for r in rows if r["participant_id"] == ids[page]]
        assert [(r["part"], r["status"]) for r in legs] == [(1, "finished"), (2, "recording")], legs
        assert "media worker stopped" in (legs[0]["error"] or ""), legs[0]

    await video_flowing(cardio, 1, label="later")
    await clinic.click("#ctl-end")
    await clinic.click('#end-dialog button[value="end"]')
    for page in pages:
        await page.locator('#call[data-finished="ended"]').wait_for()
    async with asyncio.timeout(30):
        while True:
            rows = await rows_of(url)
            if len(rows) == 4 and all(r["status"] == "finished" for r in rows):
                break
            await asyncio.sleep(0.1)  # polling the records for a condition
    for row in rows:
        path = tmp_path / "recordings" / row["path"]
        assert path.name.endswith((f"-part{row['part']}.webm", f"-part{row['part']}.mp4")), row
        assert frames_in(path) > 0, row
    assert not list((tmp_path / "recordings").rglob("*.partial"))
    for problems in (clinic_problems, cardio_problems):
        assert problems.page_errors == []
