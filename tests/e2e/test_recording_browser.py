"""A call between two Chromium pages is recorded, and the files hold what was sent.

The recorder (aiortc, in this test's process) and the browsers share a network
namespace with only lo: the test's event-loop thread enters it, so the sockets
the recorder opens while answering live there too.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import av
import pytest
import sqlalchemy as sa
from aiohttp import web

from records.schema import recordings
from web.keys import DB, RECORDING

from ..scenario import Scenario
from .conftest import COUNT_PCS, NetNs, video_flowing

pytestmark = [pytest.mark.browser, pytest.mark.timing]


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


async def recording_started(page: Any) -> None:
    """This page's own recording leg is running (its indicator says so)."""
    await page.locator('#rec-indicator[data-state="recording"]').wait_for(timeout=20_000)


async def finished_rows(app: web.Application, count: int) -> list[Any]:
    """Wait until ``count`` recordings are finished (files finalized and hashed)."""
    async with asyncio.timeout(30):
        while True:
            async with app[DB].read() as conn:
                rows = list((await conn.execute(sa.select(recordings))).mappings())
            if len(rows) == count and all(r["status"] == "finished" for r in rows):
                return rows
            await asyncio.sleep(0.1)  # polling the records for a condition


async def test_a_browser_call_is_recorded_per_participant(
    open_as: Any, scenario: Scenario, live_app: tuple[web.Application, str], netns: NetNs
) -> None:
    app, _ = live_app
    _, clinic, clinic_problems = await open_as("clinic1")
    _, cardio, _ = await open_as("cardio1", locale="en")
    cid = (await scenario.consultation("accepted")).id
    await clinic.add_init_script(COUNT_PCS)
    with netns.entered():
        await clinic.goto(f"/consultations/{cid}/call")
        await cardio.goto(f"/consultations/{cid}/call")
        for page in (clinic, cardio):
            await video_flowing(page, 1, label="rec")
        await asyncio.gather(recording_started(clinic), recording_started(cardio))
        # Everyone sees that both are recorded.
        for page in (clinic, cardio):
            await page.locator('#rec-indicator[data-peers="2"]').wait_for()
            await page.locator("#tiles .tile-remote .flag-rec").wait_for(state="visible")
        assert await clinic.locator("#rec-indicator .rec-text").text_content() == (
            "正在录像 · 正在录像的其他参会者：1"
        )
        # The call goes on for a few seconds: the length of the recording is
        # what is being checked, so here time itself is the condition.
        await asyncio.sleep(4)
        await clinic.click("#ctl-end")
        await clinic.click('#end-dialog button[value="end"]')
        ended = datetime.now(UTC)
        await clinic.locator('#call[data-finished="ended"]').wait_for()
        # The page holds its recording connection open after the end (sending
        # nothing) until the server, with the last frames in, closes it: well
        # before the page's own fallback (15 s).
        await clinic.wait_for_function(
            "() => window.__pcs.every((pc) => pc.signalingState === 'closed')", timeout=10_000
        )
        rows = await finished_rows(app, 2)
    ids = {"clinic1": await user_id(clinic), "cardio1": await user_id(cardio)}
    by_user = {user: next(r for r in rows if r["participant_id"] == ids[user]) for user in ids}
    for user, row in by_user.items():
        path = app[RECORDING].root / row["path"]
        with av.open(str(path)) as container:
            duration = (container.duration or 0) / 1e6
            frames = sum(1 for _ in container.decode(video=0))
        # From the moment the server answered this page's recording offer to the
        # end of the call (connecting takes a fraction of a second of that).
        expected = (ended - row["started_at"].replace(tzinfo=UTC)).total_seconds()
        assert frames > 0, user
        assert abs(duration - expected) <= 1.0, (user, duration, expected)
        assert row["video_codec"] == "vp8" and row["audio_codec"] == "opus"
    assert clinic_problems.page_errors == []


async def user_id(page: Any) -> str:
    data = await (await page.request.get("/api/session")).json()
    return str(data["account"]["id"])


async def test_without_consent_to_recording_the_page_says_so_and_nothing_is_written(
    open_as: Any, scenario: Scenario, live_app: tuple[web.Application, str], netns: NetNs
) -> None:
    app, _ = live_app
    _, clinic, _ = await open_as("clinic1", locale="en")
    _, cardio, _ = await open_as("cardio1", locale="en")
    # Consent to the consultation only, not to recording.
    c = await scenario.consultation("accepted", patient="陈阿姨", consent=("consultation",))
    cid = c.id
    with netns.entered():
        await clinic.goto(f"/consultations/{cid}/call")
        await cardio.goto(f"/consultations/{cid}/call")
        for page in (clinic, cardio):
            indicator = page.locator('#rec-indicator[data-state="not_consented"]')
            await indicator.wait_for()
            assert "did not consent to recording" in (await indicator.text_content() or "")
        await video_flowing(clinic, 1, label="norec")
    async with app[DB].read() as conn:
        assert list((await conn.execute(sa.select(recordings))).all()) == []
    root = app[RECORDING].root
    assert not root.exists() or not any(root.rglob("*"))
