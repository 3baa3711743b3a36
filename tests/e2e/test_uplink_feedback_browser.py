"""The recording leg's rate is set by Chromium's own controller, fed by the server.

In a relayed call the recording leg is the clinic's only uplink, so its send
rate is the live call's. The recorder answers with transport-wide feedback
(``media/twcc.py``) instead of aiortc's REMB: Chromium's congestion
controller then probes and judges loss and delay from the arrivals the server
reports, as it does browser to browser. What a user would see, and what is
checked: the uplink's estimate moves off the start rate within seconds (with
REMB alone it climbed about 25 kbit/s a second; with feedback it does not
understand, it would stay where it started).
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from web.keys import RECORDING

from ..scenario import Scenario
from .conftest import COUNT_PCS, NetNs, video_flowing
from .relayed import netns, settings  # noqa: F401 - the fixtures, taken by name
from .test_recording_browser import recording_started

pytestmark = [pytest.mark.browser, pytest.mark.timing]

# The estimate of the page's connection that sends video (its recording leg).
UPLINK_ESTIMATE = """async () => {
  for (const pc of window.__pcs) {
    if (pc.connectionState !== "connected") continue;
    const report = await pc.getStats();
    let sends = false;
    let estimate = null;
    report.forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video" && s.bytesSent > 0) sends = true;
      if (s.type === "candidate-pair" && s.nominated && s.availableOutgoingBitrate)
        estimate = s.availableOutgoingBitrate;
    });
    if (sends) return estimate;
  }
  return null;
}"""


async def test_the_recording_leg_follows_transport_wide_feedback_from_the_first_seconds(
    open_as: Any,
    scenario: Scenario,
    live_app: tuple[web.Application, str],
    netns: NetNs,  # noqa: F811 - the imported fixture
) -> None:
    app, _ = live_app
    start = app[RECORDING].recorder.start_bitrate
    _, clinic, problems = await open_as("clinic1")
    _, cardio, _ = await open_as("cardio1")
    for page in (clinic, cardio):
        await page.add_init_script(COUNT_PCS)
    cid = (await scenario.consultation("accepted")).id
    with netns.entered():
        await clinic.goto(f"/consultations/{cid}/call")
        await cardio.goto(f"/consultations/{cid}/call")
        await recording_started(clinic)
        await video_flowing(cardio, 1, label="relayed")
        # Chromium's controller probes well above the start rate once it reads the
        # server's reports (loopback carries far more than the leg's cap); it
        # then moves with what it measures, so the test waits for the climb
        # (with REMB alone it stayed at 0.9 Mbit/s and fell).
        await clinic.wait_for_function(
            f"async () => (await ({UPLINK_ESTIMATE})()) > {start * 2}",
            timeout=8_000,
            polling=250,
        )
    # Both legs were answered with feedback, and reported what arrived.
    legs = list(app[RECORDING].recorder.legs.values())
    assert len(legs) == 2
    for leg in legs:
        assert leg.feedback is not None and leg.feedback.reported > 0
    assert await problems.collect(clinic) == []
