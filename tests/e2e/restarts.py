"""What the browser tests that kill server processes share.

``serve_in`` runs ``python -m web.cli serve`` (``serverproc.ServerProcess``) in
the browsers' loopback-only network namespace on the demo community; the rest
is what those tests look at after the kill: the page's recording indicator and
call banner, the recordings table, the legs on disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import av
import sqlalchemy as sa
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from records.db import Database
from records.schema import recordings

from ..serverproc import ServerProcess
from .conftest import CALL_DIAGNOSIS, LOOPBACK_NETWORKS, NetNs


def serve_in(
    netns: NetNs, folder: Path, demo_database: str, log: str = "server.log", **settings: str
) -> ServerProcess:
    """``serve`` in ``netns`` on the demo community (``demo_database`` put it in
    ``folder``), its recorder on loopback, no escalation during the test."""
    extra = {"database_url": demo_database} if demo_database else {}
    return ServerProcess.on_free_port(
        folder,
        folder / log,
        netns.command,
        recorder_addresses="127.0.0.1",
        ice_allowed_networks=",".join(LOOPBACK_NETWORKS),
        escalation_check_seconds="3600",
        **extra,
        **settings,
    )


async def recording(page: Any, timeout_ms: float = 20_000) -> None:
    await page.locator('#rec-indicator[data-state="recording"]').wait_for(timeout=timeout_ms)


async def back_in_call(page: Any) -> None:
    """The page's banner says the call is on with the other side there."""
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
    """Wait until ``count`` legs have ``size`` bytes each on disk (what a crash leaves)."""
    async with asyncio.timeout(30):
        while True:
            found = partial_sizes(root)
            if len(found) == count and min(found) >= size:
                return
            await asyncio.sleep(0.1)  # polling the disk for a condition


def frames_in(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
