"""Replay in Chromium: a recorded call between fake-device pages, then its replay."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from records import sealed
from records.schema import audit_log
from web.keys import DB
from web.settings import Settings

from ..conftest import DB_NAME, make_settings
from ..scenario import Scenario
from ..web.encryption import ENCRYPTION
from .conftest import NetNs, video_flowing
from .test_recording_browser import finished_rows, recording_started

pytestmark = pytest.mark.browser

PLAYING = """(n) => {
  const ps = window.__replay.players();
  return ps.length === n && ps.every((p) => p.videoWidth > 0 && p.currentTime > 1.0);
}"""

# Before Play: the playhead rests on the first recorded moment, whose picture
# shows under its watermark, without a click or a seek.
FIRST_SHOWN = """() => {
  if (!window.__replay) return false;  // the page's script is not there yet
  const ps = window.__replay.players();
  const start = Math.min(...ps.map((p) => p.offset));
  const first = ps.find((p) => p.offset === start);
  const figure = document.querySelector(`figure[data-recording-id="${first.id}"]`);
  const video = figure.querySelector("video");
  return Math.abs(window.__replay.time() - start) < 0.01 && first.state === "inside"
    && first.videoWidth > 0 && first.currentTime === 0 && !window.__replay.playing()
    && getComputedStyle(video).visibility === "visible"
    && figure.querySelector(":scope > canvas.wm-overlay") !== null;
}"""

# What each player looked like when its first picture was presented: the page
# comes with each player's place at the first recorded moment, so that picture
# is not dimmed as "not in the call yet" while the page's script is not there.
FIRST_PICTURES = """(() => {
  window.__firstPictures = {};
  const watched = new WeakSet();
  new MutationObserver(() => {
    for (const video of document.querySelectorAll("figure.player video")) {
      if (watched.has(video)) continue;
      watched.add(video);
      video.requestVideoFrameCallback(() => {
        const figure = video.closest("figure");
        window.__firstPictures[figure.dataset.recordingId] = {
          state: figure.dataset.state,
          opacity: getComputedStyle(video).opacity,
        };
      });
    }
  }).observe(document, { childList: true, subtree: true });
})()"""


async def replays_started(app: web.Application, cid: str) -> int:
    async with app[DB].read() as conn:
        rows = await conn.execute(
            sa.select(sa.func.count())
            .select_from(audit_log)
            .where(audit_log.c.action == "replay.start", audit_log.c.object_id == cid)
        )
        return int(rows.scalar_one())


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, demo_template: Path) -> Settings:
    shutil.copy(demo_template, tmp_path / DB_NAME)
    return make_settings(tmp_path, **ENCRYPTION[getattr(request, "param", "plaintext")])


async def chat(page: Any, text: str) -> None:
    await page.fill("#chat-text", text)
    await page.press("#chat-text", "Enter")


@pytest.mark.parametrize("settings", ["plaintext", "aes-256-gcm"], indirect=True)
async def test_replay_plays_both_recordings_in_step_and_seeks_from_the_timeline(
    settings: Settings,
    open_as: Any,
    scenario: Scenario,
    live_app: tuple[web.Application, str],
    netns: NetNs,
    screenshots_dir: Any,
) -> None:
    app, _ = live_app
    _, clinic, _ = await open_as("clinic1")
    _, cardio, _ = await open_as("cardio1", locale="en")
    cid = (await scenario.consultation("accepted")).id
    with netns.entered():
        await clinic.goto(f"/consultations/{cid}/call")
        await cardio.goto(f"/consultations/{cid}/call")
        for page in (clinic, cardio):
            await video_flowing(page, 1, label="replay")
        await asyncio.gather(recording_started(clinic), recording_started(cardio))
        await asyncio.sleep(2)  # some call before the chat line: time is the condition
        await chat(clinic, "请看心电图")
        await cardio.locator('#chat-log li[data-kind="chat"]:not([data-pending])').wait_for()
        await asyncio.sleep(2)  # and some after it
        await cardio.click("#ctl-end")
        await cardio.click('#end-dialog button[value="end"]')
        await finished_rows(app, 2)
        files = list((settings.data_dir / "recordings").rglob("*.webm"))
        assert len(files) == 2
        # With a key, the player below reads files that are sealed on disk.
        assert all(sealed.is_sealed(f) for f in files) is (settings.keyring() is not None)

        _, review, review_problems = await open_as("review1", locale="en")
        await review.add_init_script(FIRST_PICTURES)
        await review.goto("/recordings")
        await review.locator(f'#results-body tr[data-consultation-id="{cid}"] a').click()
        await review.wait_for_url(f"**/consultations/{cid}/replay")
        await review.locator('#replay[data-state="ready"]').wait_for()
        await review.wait_for_function(FIRST_SHOWN, polling=100, timeout=10_000)
        players = await review.evaluate("window.__replay.players()")
        first = min(players, key=lambda p: p["offset"])
        shown = await review.evaluate("window.__firstPictures")
        assert shown[first["id"]] == {"state": "inside", "opacity": "1"}, shown
        # The page came with its replay: opening it is one audited replay.
        assert await replays_started(app, cid) == 1
        await review.click("#play")
        await review.wait_for_function(PLAYING, arg=2, polling=200, timeout=20_000)

        await review.click("#play")  # pause, so that positions can be compared
        event = review.locator('#timeline li[data-kind="chat"] button')
        offset = float(await event.get_attribute("data-offset") or "nan")
        await event.click()
        players = await review.evaluate("window.__replay.players()")
        for p in players:
            expected = max(offset - p["offset"], 0.0)
            assert abs(p["currentTime"] - expected) <= 0.5, (p, offset)
        assert (
            await review.locator('#timeline li[data-kind="chat"]').get_attribute("aria-current")
            == "true"
        )
        # For people to look at (screenshots/ is not committed).
        for width, height in ((1400, 900), (390, 844)):
            await review.set_viewport_size({"width": width, "height": height})
            await review.screenshot(
                path=str(screenshots_dir / f"replay-en-{width}.png"), full_page=True
            )
        # As it opens, in Chinese: the first recorded moment, before Play.
        await review.goto(f"/consultations/{cid}/replay?lang=zh_CN")
        # The page's module may still be on its way when the page has loaded
        # (a CI run read window.__replay before it was there): ready first.
        await review.locator('#replay[data-state="ready"]').wait_for()
        await review.wait_for_function(FIRST_SHOWN, polling=100, timeout=10_000)
        for width, height in ((1280, 800), (390, 844)):
            await review.set_viewport_size({"width": width, "height": height})
            await review.screenshot(
                path=str(screenshots_dir / f"replay-opened-zh_CN-{width}.png"), full_page=True
            )
        await review.goto("/recordings?lang=zh_CN")
        await review.locator("#results-body tr").first.wait_for()
        for width, height in ((1400, 900), (390, 844)):
            await review.set_viewport_size({"width": width, "height": height})
            await review.screenshot(
                path=str(screenshots_dir / f"recordings-zh_CN-{width}.png"), full_page=True
            )
    assert review_problems.page_errors == []


async def test_replay_is_refused_to_outsiders_and_audited(
    open_as: Any, scenario: Scenario, live_app: tuple[web.Application, str]
) -> None:
    app, _ = live_app
    cid = (await scenario.consultation("accepted")).id
    _, outsider, _ = await open_as("clinic2", locale="en")
    response = await outsider.request.get(f"/api/consultations/{cid}/replay")
    assert response.status == 404
    await outsider.goto(f"/consultations/{cid}/replay")
    notice = outsider.locator("#replay-error")
    await notice.wait_for()
    assert "not found" in (await notice.text_content() or "")
    async with app[DB].read() as conn:
        denied = (
            (
                await conn.execute(
                    sa.select(audit_log.c.object_id).where(audit_log.c.action == "replay.denied")
                )
            )
            .scalars()
            .all()
        )
    assert denied.count(cid) == 2  # the API call and the page's own open
