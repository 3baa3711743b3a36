"""A relayed call in real Chromium whose recording disk fills: the call goes on.

The recordings live on a small tmpfs of their own (``tests/fullfs.py``) that
the test fills mid-call and frees again; the pages and the recorder live in a
loopback-only network namespace, as in ``test_relay_browser.py``. Screenshots of
the call page with the disk full (zh and en, 390 and 1280 px) go to
``screenshots/``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from records.schema import recordings
from web.keys import DB, RECORDING

from ..fullfs import fill, tmpfs
from ..scenario import Scenario
from .conftest import COUNT_PCS, NetNs, video_flowing
from .relayed import netns, settings  # noqa: F401 - the fixtures, taken by name
from .test_recording_browser import recording_started, user_id
from .test_relay_browser import SENDING_VIDEO

pytestmark = [pytest.mark.browser, pytest.mark.timing]

NARROW = {"width": 390, "height": 844}
WIDE = {"width": 1280, "height": 800}
STOPPED = '#rec-indicator[data-state="failed"][data-reason="disk_full"]'


async def parts(app: web.Application, participant_id: str) -> list[tuple[int, str]]:
    async with app[DB].read() as conn:
        query = (
            sa.select(recordings.c.part, recordings.c.status)
            .where(recordings.c.participant_id == participant_id)
            .order_by(recordings.c.part)
        )
        return [(r.part, r.status) for r in (await conn.execute(query)).all()]


async def test_the_specialists_video_plays_on_when_the_recording_disk_fills(
    open_as: Any,
    scenario: Scenario,
    live_app: tuple[web.Application, str],
    netns: NetNs,  # noqa: F811 - the imported fixture
    screenshots_dir: Path,
) -> None:
    app, _ = live_app
    service = app[RECORDING]
    # The same check as /readyz, with a threshold this small disk can meet.
    service.kept.min_free_bytes = 1024 * 1024
    service.kept.check_seconds = 0.5
    _, clinic, clinic_problems = await open_as("clinic1", viewport=NARROW)  # zh_CN
    _, cardio, cardio_problems = await open_as("cardio1", locale="en", viewport=WIDE)
    for page in (clinic, cardio):
        await page.add_init_script(COUNT_PCS)
    cid = (await scenario.consultation("accepted")).id
    with tmpfs(service.root, 16 * 1024 * 1024), netns.entered():
        await clinic.goto(f"/consultations/{cid}/call")
        await cardio.goto(f"/consultations/{cid}/call")
        for page in (clinic, cardio):
            await video_flowing(page, 1, label="before")
        await asyncio.gather(recording_started(clinic), recording_started(cardio))
        connections = [await page.evaluate("window.__pcs.length") for page in (clinic, cardio)]

        filler = fill(service.root)
        # Every page says recording stopped, and why; the others are flagged.
        for page in (clinic, cardio):
            await page.locator(STOPPED).wait_for(timeout=30_000)
            await page.locator('#tiles .tile-remote[data-recorded="false"]').wait_for()
        assert await clinic.locator("#rec-indicator .rec-text").text_content() == (
            "录像已停止：服务器的录像磁盘已满。会诊继续；腾出空间后录像会自动恢复。"
        )
        assert await cardio.locator("#rec-indicator .rec-text").text_content() == (
            "Recording stopped: the server's recording disk is full. The call goes on;"
            " recording resumes by itself when there is room."
        )
        await cardio.get_by_text("is not being recorded: the recording stopped").first.wait_for()
        # The specialist's picture of the clinic (and the clinic's of them) plays on,
        # on the same connections: each page still sends its camera once.
        for page in (clinic, cardio):
            await video_flowing(page, 1, label="disk full", timeout_ms=10_000)
            assert await page.evaluate(SENDING_VIDEO) == 1
        assert [await page.evaluate("window.__pcs.length") for page in (clinic, cardio)] == (
            connections
        )
        for page, name in ((clinic, "zh_CN"), (cardio, "en")):
            await page.screenshot(path=str(screenshots_dir / f"call-disk-full-{name}.png"))
        await clinic.set_viewport_size(WIDE)
        await cardio.set_viewport_size(NARROW)
        for page, name in ((clinic, "zh_CN-1280"), (cardio, "en-390")):
            await page.screenshot(path=str(screenshots_dir / f"call-disk-full-{name}.png"))
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name}: {overflow}px horizontal overflow"

        # Room again: both are recorded again, by themselves, without a new connection.
        filler.unlink()
        await asyncio.gather(recording_started(clinic), recording_started(cardio))
        for page in (clinic, cardio):
            await page.locator('#tiles .tile-remote[data-recorded="true"]').wait_for()
            await video_flowing(page, 1, label="room again", timeout_ms=10_000)
        assert [await page.evaluate("window.__pcs.length") for page in (clinic, cardio)] == (
            connections
        )
        for page in (clinic, cardio):
            found = await parts(app, await user_id(page))
            assert [p for p, _ in found] == [1, 2], found
            # Part 1 (what was written before the disk filled) was finished once
            # there was room; part 2 runs.
            assert found == [(1, "finished"), (2, "recording")], found
    for page, problems in ((clinic, clinic_problems), (cardio, cardio_problems)):
        assert await problems.collect(page) == []
