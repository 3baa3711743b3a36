"""Two web processes on one Redis, one page on each, in real Chromium; the process
that holds the call is killed mid-call (SIGKILL), and the call resumes.

Processes A and B (``python -m web.cli serve``) share the data directory, the
database and a ``redis-server``, all inside the browsers' loopback-only network
namespace (see conftest.py). The clinic's page opens A's address and joins
first, so A holds the room and records both legs; the cardiologist's page opens
B's, which forwards its signaling to A. A is killed and started again on its
port, as a supervisor does. B notices A's lease lapse and sends its page away
to come back; the pages rejoin (B's first), the room moves to a living process,
the legs A left are repaired (part 1, ``recovered``) and recording continues in
part 2, and the browsers' video never depended on the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import DB_NAME
from ..redisserver import RedisServer, redis_or_skip
from ..scenario import Scenario
from ..serverproc import ServerProcess
from .conftest import NetNs, video_flowing
from .restarts import account_id, back_in_call, partials_written, recording, rows_of, serve_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timing]

LEASE = "1"


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


@pytest.fixture(autouse=True)
def inside(netns: NetNs) -> Iterator[None]:
    """The whole test in the namespace: the servers and Redis only listen there."""
    with netns.entered():
        yield


@pytest.fixture
def redis_in_netns(tmp_path: Path, netns: NetNs) -> Iterator[RedisServer]:
    redis_or_skip()
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder, wrap=netns.command)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def servers(
    tmp_path: Path, netns: NetNs, demo_database: str, redis_in_netns: RedisServer
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """A and B on the demo community (``demo_database`` put it in ``tmp_path``)."""
    a, b = (
        serve_in(
            netns,
            tmp_path,
            demo_database,
            log=f"server-{name}.log",
            media_plane="mesh",
            redis_url=redis_in_netns.url,
            redis_lease_seconds=LEASE,
        )
        for name in ("a", "b")
    )
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop())


@pytest.fixture
def live_server(servers: tuple[ServerProcess, ServerProcess]) -> str:
    """The fixtures' base URL (open_as, scenario): process A."""
    return servers[0].base


async def test_killing_the_web_process_that_holds_the_call_resumes_it_on_the_other(
    open_as: Any,
    scenario: Scenario,
    servers: tuple[ServerProcess, ServerProcess],
    tmp_path: Path,
    demo_database: str,
) -> None:
    a, b = servers
    url = demo_database or f"sqlite+aiosqlite:///{tmp_path / DB_NAME}"
    _, clinic, clinic_problems = await open_as("clinic1", locale="en")
    _, cardio, cardio_problems = await open_as("cardio1", locale="en", base=b.base)
    pages = (clinic, cardio)
    cid = (await scenario.consultation("accepted")).id
    # The clinic first: its process (A) gets the room and records both legs.
    await clinic.goto(f"/consultations/{cid}/call")
    await recording(clinic)
    await cardio.goto(f"/consultations/{cid}/call")
    for page in pages:
        await recording(page)
        await page.locator('#rec-indicator[data-peers="2"]').wait_for()
        await video_flowing(page, 1, label="before")
    ids = {page: await account_id(page) for page in pages}
    connects = {page: await page.evaluate("window.__call.connects") for page in pages}
    await partials_written(tmp_path / "recordings", 2, 40_000)

    await a.kill()
    await a.start()  # as a supervisor would; the clinic's page reconnects to it

    for page in pages:
        await recording(page, timeout_ms=60_000)
        await back_in_call(page)
        await page.locator('#tiles .tile-remote[data-recorded="true"]').wait_for()
        await page.locator('#rec-indicator[data-peers="2"]').wait_for()
        await video_flowing(page, 1, label="after")
        assert await page.evaluate("window.__call.connects") > connects[page]

    # The clinic's page came back to A and restarted ICE towards the cardiologist.
    peer = (await clinic.evaluate("window.__call.peers()"))[0]
    history = await clinic.evaluate("(id) => window.__call.history(id)", peer)
    events = [what for _, what in history["events"]]
    assert "ICE restart (signaling back)" in events, history
    restarted = events.index("ICE restart (signaling back)")
    assert "answer received" in events[restarted:], history

    # The legs A was writing were repaired; each continues in part 2.
    async with asyncio.timeout(30):
        while True:
            rows = await rows_of(url)
            legs = {p: [r for r in rows if r["participant_id"] == ids[p]] for p in pages}
            if all(
                [(r["part"], r["status"]) for r in legs[p]] == [(1, "recovered"), (2, "recording")]
                for p in pages
            ):
                break
            await asyncio.sleep(0.1)  # polling the records for a condition

    await clinic.click("#ctl-end")
    await clinic.click('#end-dialog button[value="end"]')
    for page in pages:
        await page.locator('#call[data-finished="ended"]').wait_for()
    async with asyncio.timeout(30):
        while True:
            rows = await rows_of(url)
            if len(rows) == 4 and all(r["status"] in ("recovered", "finished") for r in rows):
                break
            await asyncio.sleep(0.1)  # polling the records for a condition
    for problems in (clinic_problems, cardio_problems):
        assert problems.page_errors == []
