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
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from records.db import Database
from records.demo import DEMO_PASSWORD
from records.schema import recordings

from ..conftest import DB_NAME
from ..redisserver import RedisServer, redis_or_skip
from ..scenario import Scenario
from ..serverproc import free_port, server_env
from .conftest import CALL_DIAGNOSIS, ROOT, NetNs, video_flowing, watch

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


@dataclass
class ServerProcess:
    """``python -m web.cli serve`` in the namespace, killed and started again by the test."""

    netns: NetNs
    env: dict[str, str]
    base: str
    log: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.netns.command(sys.executable, "-m", "web.cli", "serve"),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
            )
        async with asyncio.timeout(30), aiohttp.ClientSession() as http:
            while True:
                assert self.proc.returncode is None, self.log.read_text(errors="replace")
                try:
                    async with http.get(self.base + "/api/health") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)  # polling a port that is not open yet

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    await self.proc.wait()
            except TimeoutError:
                await self.kill()


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
    extra = {"database_url": demo_database} if demo_database else {}
    out = []
    for name in ("a", "b"):
        port = free_port()
        env = server_env(
            tmp_path,
            port=str(port),
            recorder_addresses="127.0.0.1",
            ice_allowed_networks="127.0.0.0/8,::1/128",
            escalation_check_seconds="3600",
            media_plane="mesh",
            redis_url=redis_in_netns.url,
            redis_lease_seconds=LEASE,
            **extra,
        )
        env["PYTHONPATH"] = str(ROOT)
        out.append(
            ServerProcess(netns, env, f"http://127.0.0.1:{port}", tmp_path / f"server-{name}.log")
        )
    a, b = out
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


async def open_on(browser: Any, base: str, username: str) -> tuple[Any, Any]:
    """A page logged in as ``username`` on the process at ``base``."""
    context = await browser.new_context(
        base_url=base, viewport={"width": 1400, "height": 900}, locale="en-US"
    )
    await context.add_cookies([{"name": "tc_lang", "value": "en", "url": base}])
    page = await context.new_page()
    problems = watch(page)
    await page.goto("/login")
    await page.fill("#username", username)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(lambda url: "/login" not in url)
    return context, problems


async def recording(page: Any, timeout_ms: float = 20_000) -> None:
    await page.locator('#rec-indicator[data-state="recording"]').wait_for(timeout=timeout_ms)


async def back_in_call(page: Any) -> None:
    try:
        await page.locator('#call-banner[data-kind="live"]').wait_for(timeout=30_000)
    except PlaywrightTimeoutError:
        seen = await page.evaluate(CALL_DIAGNOSIS)
        raise AssertionError(f"not back in the call on {page.url}: {seen}") from None


async def account_id(page: Any) -> str:
    data = await (await page.request.get("/api/session")).json()
    return str(data["account"]["id"])


async def rows_of(url: str) -> list[Any]:
    db = Database(url)
    try:
        async with db.read() as conn:
            query = sa.select(recordings).order_by(recordings.c.participant_id, recordings.c.part)
            return list((await conn.execute(query)).mappings())
    finally:
        await db.close()


def partial_sizes(root: Path) -> list[int]:
    """The sizes of the legs being written (their files end in .partial until finished)."""
    return [p.stat().st_size for p in root.rglob("*.partial")]


async def partials_written(root: Path, count: int, size: int) -> None:
    async with asyncio.timeout(30):
        while True:
            found = partial_sizes(root)
            if len(found) == count and min(found) >= size:
                return
            await asyncio.sleep(0.1)  # polling the disk for a condition


async def test_killing_the_web_process_that_holds_the_call_resumes_it_on_the_other(
    open_as: Any,
    browser: Any,
    scenario: Scenario,
    servers: tuple[ServerProcess, ServerProcess],
    tmp_path: Path,
    demo_database: str,
) -> None:
    a, b = servers
    url = demo_database or f"sqlite+aiosqlite:///{tmp_path / DB_NAME}"
    _, clinic, clinic_problems = await open_as("clinic1", locale="en")
    cardio_context, cardio_problems = await open_on(browser, b.base, "cardio1")
    cardio = cardio_context.pages[0]
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
