"""A recorded call relayed by the server: each page sends its camera once.

The pages (and the recorder's sockets: the test's event-loop thread enters the
namespace) live in a network namespace with only lo. Each page's one uplink is
its recording leg; the others' video reaches it on receive-only relay links the
server offers, carrying the same encoded frames the recorder writes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import av
import pytest
from aiohttp import WSCloseCode, web

from web.keys import RECORDING, SOCKETS

from ..scenario import Scenario
from .conftest import (
    COUNT_PCS,
    LOOPBACK_ADDRESSES,
    NetNs,
    invite,
    selected_pairs,
    video_flowing,
)
from .relayed import netns, settings  # noqa: F401 - the fixtures, taken by name
from .test_recording_browser import finished_rows, recording_started, user_id

pytestmark = [pytest.mark.browser, pytest.mark.timing]


# How many open connections of the page send video (bytes on an outbound-rtp).
SENDING_VIDEO = """async () => {
  let n = 0;
  for (const pc of window.__pcs) {
    if (pc.connectionState === "closed") continue;
    const report = await pc.getStats();
    let sends = false;
    report.forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video" && s.bytesSent > 0) sends = true;
    });
    if (sends) n += 1;
  }
  return n;
}"""


async def test_a_relayed_call_sends_once_is_recorded_and_survives_a_signaling_drop(
    open_as: Any,
    scenario: Scenario,
    live_app: tuple[web.Application, str],
    netns: NetNs,  # noqa: F811 - the imported fixture
) -> None:
    app, _ = live_app
    _, clinic, clinic_problems = await open_as("clinic1")
    _, cardio, cardio_problems = await open_as("cardio1", locale="en")
    for page in (clinic, cardio):
        await page.add_init_script(COUNT_PCS)
    cid = (await scenario.consultation("accepted")).id
    with netns.entered():
        await clinic.goto(f"/consultations/{cid}/call")
        await cardio.goto(f"/consultations/{cid}/call")
        for page in (clinic, cardio):
            await video_flowing(page, 1, label="relayed")
        await asyncio.gather(recording_started(clinic), recording_started(cardio))
        for page in (clinic, cardio):
            assert await page.evaluate("window.__call.mode()") == "relay"
            # The camera goes out once: on the recording leg, to the server.
            assert await page.evaluate(SENDING_VIDEO) == 1
            for pair in await selected_pairs(page):
                assert pair["width"] > 0
                assert pair["local"]["address"] in LOOPBACK_ADDRESSES, pair
                assert pair["remote"]["address"] in LOOPBACK_ADDRESSES, pair
        # What each page sees came through the server's relay of the other's leg.
        legs = app[RECORDING].recorder.legs
        assert len(legs) == 2
        for leg in legs.values():
            assert leg.fanout is not None and len(leg.fanout.downlinks) == 1
            (downlink,) = leg.fanout.downlinks.values()
            assert downlink.video is not None and downlink.video.forwarded > 0
            assert downlink.tracks["audio"].forwarded > 0

        # The server drops the specialist's socket: the page comes back, is
        # offered the relay again, and the picture flows again.
        connects = await cardio.evaluate("window.__call.connects")
        for ws in [ws for ws, _ in app[SOCKETS].items()]:
            if not ws.closed:
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"test: drop")
        await cardio.wait_for_function(
            "(n) => window.__call.connects > n", arg=connects, timeout=10_000
        )
        for page in (clinic, cardio):
            await video_flowing(page, 1, label="relayed-after-drop", timeout_ms=15_000)

        await clinic.click("#ctl-end")
        await clinic.click('#end-dialog button[value="end"]')
        ended = datetime.now(UTC)
        await clinic.locator('#call[data-finished="ended"]').wait_for()
        rows = await finished_rows(app, 2)
    ids = {await user_id(clinic), await user_id(cardio)}
    assert {r["participant_id"] for r in rows} == ids
    for row in rows:
        with av.open(str(app[RECORDING].root / row["path"])) as container:
            duration = (container.duration or 0) / 1e6
            frames = sum(1 for _ in container.decode(video=0))
        expected = (ended - row["started_at"].replace(tzinfo=UTC)).total_seconds()
        assert frames > 0
        assert abs(duration - expected) <= 1.0, (duration, expected)
    for page, problems in ((clinic, clinic_problems), (cardio, cardio_problems)):
        found = [p for p in await problems.collect(page) if "test: " not in p]
        assert found == []


async def test_three_doctors_in_a_relayed_call_each_send_once_and_see_both_others(
    open_as: Any,
    scenario: Scenario,
    live_app: tuple[web.Application, str],
    netns: NetNs,  # noqa: F811 - the imported fixture
) -> None:
    app, _ = live_app
    _, clinic, clinic_problems = await open_as("clinic1")
    _, cardio, _ = await open_as("cardio1", locale="en")
    _, county, _ = await open_as("county1")
    for page in (clinic, cardio, county):
        await page.add_init_script(COUNT_PCS)
    cid = (await scenario.consultation("accepted")).id
    await invite(clinic, cid, "county1")
    pages = (clinic, cardio, county)
    with netns.entered():
        for page in pages:
            await page.goto(f"/consultations/{cid}/call")
        for page in pages:
            await video_flowing(page, 2, label="relayed-three", timeout_ms=45_000)
        for page in pages:
            assert await page.evaluate(SENDING_VIDEO) == 1
        for leg in app[RECORDING].recorder.legs.values():
            assert leg.fanout is not None and len(leg.fanout.downlinks) == 2
        await clinic.click("#ctl-end")
        await clinic.click('#end-dialog button[value="end"]')
        await clinic.locator('#call[data-finished="ended"]').wait_for()
        await finished_rows(app, 3)
    assert await clinic_problems.collect(clinic) == []
