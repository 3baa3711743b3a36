"""The clinic's file holds every frame its camera gave, from the leg's start to "end".

Real Chromium, real WebRTC through the real server (the relayed plane, the
default: the clinic's leg is its live uplink too), the file decoded by PyAV.
The camera is the township benchmark's clip, whose frames carry their index
(``tests/bench/township.py``, ``read_stamp``): the benchmark's script in the
page reads the camera's frame as the recording leg sends its first frame and
as the doctor ends the call, and the file is checked against both.

Two faults measured in the benchmark first (README, the leg's start and end):

- the leg's start: when the camera's first frame reached the encoder before the
  connection was up, Chromium started its VP8 encoder at 300 kbit/s, and libvpx
  dropped the 1-2 frames after the first keyframe when the target rose (in 6 of
  15 calls on a clean link). Now the camera comes to the leg's sender once the
  connection is up (``recording.js`` ``attachCamera``);
- the end: the frames still in the browser's pipeline when "end" reached the
  server were not recorded (1-2 frames short in 5 of 49 calls in the
  benchmark). Now the page that ends the call sends "end" once its camera's
  frames until then are encoded (``recording.js`` ``flush``); a first version
  that took the camera off the leg first ended this test's file 4 frames short.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from records.schema import recordings
from web.keys import DB, RECORDING

from ..bench.township import COUNTS, LEG_ENDED, LEG_TOTALS, clip_offset, file_frames, make_clip
from ..scenario import Scenario
from .conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    COUNT_PCS,
    NetNs,
    _require_chromium,
    video_flowing,
)
from .relayed import netns, settings  # noqa: F401 - the fixtures, taken by name

pytestmark = [pytest.mark.browser, pytest.mark.timing]


@pytest.fixture
async def browser(
    netns: NetNs,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> AsyncIterator[Any]:
    """Chromium whose camera is the stamped clip (the suite's own has a fake one)."""
    _require_chromium()
    from playwright.async_api import async_playwright

    clip = tmp_path / "camera.y4m"
    await asyncio.to_thread(make_clip, clip)
    executable = tmp_path / "chromium-in-netns"
    executable.write_text(
        f'#!/bin/sh\nexec nsenter --net={netns.path} {CHROMIUM} "$@"\n', encoding="utf-8"
    )
    executable.chmod(0o755)
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={clip}"]
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(executable), args=args)
        try:
            yield chromium
        finally:
            await chromium.close()


async def finished_file(app: web.Application, participant_id: str) -> Path:
    """The participant's recording, once finished (finalized and hashed)."""
    async with asyncio.timeout(30):
        while True:
            async with app[DB].read() as conn:
                query = sa.select(recordings).where(recordings.c.participant_id == participant_id)
                row = (await conn.execute(query)).mappings().first()
            if row is not None and row["status"] == "finished":
                return app[RECORDING].root / row["path"]
            await asyncio.sleep(0.1)  # polling the records for a condition


async def test_the_file_holds_every_camera_frame_from_the_leg_s_start_to_the_end(
    open_as: Any,
    scenario: Scenario,
    live_app: tuple[web.Application, str],
    netns: NetNs,  # noqa: F811 - the imported fixture
) -> None:
    app, _ = live_app
    context, clinic, problems = await open_as("clinic1")
    _, cardio, _ = await open_as("cardio1", locale="en")
    await context.add_init_script(COUNT_PCS)
    await context.add_init_script(COUNTS)
    me = (await (await clinic.request.get("/api/session")).json())["account"]["id"]
    cid = (await scenario.consultation("accepted")).id
    with netns.entered():
        await clinic.goto(f"/consultations/{cid}/call")
        await cardio.goto(f"/consultations/{cid}/call")
        await clinic.locator('#rec-indicator[data-state="recording"]').wait_for(timeout=20_000)
        # The leg (its connection sends video only), its first frame sent and
        # the camera's frame read then.
        leg = await clinic.wait_for_function(
            """() => {
              const i = window.__pcs.findIndex((pc) => pc.getTransceivers().some(
                (t) => t.direction === "sendonly" && t.receiver.track.kind === "video"));
              return i >= 0 && window.__pcs[i].__firstStamp !== undefined ? i + 1 : null;
            }""",
            timeout=20_000,
        )
        index = await leg.json_value() - 1
        # The specialist sees the clinic's camera; then the call goes on for a
        # few seconds: the length of the recording is what is checked, so here
        # time itself is the condition.
        await video_flowing(cardio, 1, label="frames")
        await asyncio.sleep(3)
        await clinic.click("#ctl-end")
        await clinic.evaluate("window.__readEnd()")  # the camera's frame now
        await clinic.click('#end-dialog button[value="end"]')
        await clinic.locator('#call[data-finished="ended"]').wait_for()
        await clinic.wait_for_function(LEG_ENDED, arg=index, timeout=20_000)
        totals = await clinic.evaluate(LEG_TOTALS, index)
        path = await finished_file(app, me)
    held = await asyncio.to_thread(file_frames, path)
    begun, ended = totals["firstStamp"], totals["atEnd"]["stamp"]
    assert begun is not None and ended is not None, totals
    assert held.frames > 40, held
    assert held.refused == 0 and held.wrong == [] and held.unread == 0, held
    # No camera frame missing in the leg's first half second (the start's gap
    # was 1-2 frames at 0.04-0.13 s), and none over 2 frames anywhere (the
    # issue's measure: a keyframe asked for, or the encoder on a busy machine,
    # can cost one now and then, README "What is left"; one CI run had one at
    # 1.9 s) ...
    assert [gap for gap in held.gaps if gap[0] < 0.5] == [], held.gaps
    assert all(size <= 2 for _, size in held.gaps), held.gaps
    # ... the file begins at the latest with the frame the camera gave as the
    # leg sent its first (the read comes a frame or two after it) ...
    assert clip_offset(held.places[0] - begun) <= 0, (held.places[0], begun)
    # ... and holds every frame before the one the camera gave at "end".
    assert held.short_of(ended) == 0, (held.places[-3:], ended)
    assert problems.page_errors == []
