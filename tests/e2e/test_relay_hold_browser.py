"""Chromium holds a relayed picture as long as the recorder asks (``media/hold.py``).

Two real Chromium pages and the real recorder (in this test's process, in a
loopback-only network namespace): one page sends a canvas's video to the
recorder, which relays it to two viewer pages. On loopback no packet needs a
retransmission, so the hold the recorder computes is 0; the test sets it for
the first viewer, as the recorder does for a lossy uplink, and reads in
Chromium's own statistics how long that viewer's frames waited in its jitter
buffer, against the second viewer's, and again once the hold is given back.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from media.hold import OFFER_ID, accepted_id
from media.leg import RecordingKey
from media.recorder import Recorder

from .conftest import NetNs

pytestmark = [pytest.mark.browser, pytest.mark.timing]

KEY = RecordingKey("h" * 32, "s" * 32)
HOLD_MS = 400
ORIGIN = "http://127.0.0.1:9"  # nothing listens: the test's route answers
GATHERED = """(pc) => new Promise((done) => {
  if (pc.iceGatheringState === "complete") return done();
  pc.addEventListener("icegatheringstatechange", () => {
    if (pc.iceGatheringState === "complete") done();
  });
})"""
# Chromium's fake camera. A page allowed a camera shows its host candidates
# (otherwise they are mDNS names, which the recorder cannot resolve).
CAMERA = "navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } })"
SOURCE = f"""async () => {{
  const camera = (await {CAMERA}).getVideoTracks()[0];
  const pc = new RTCPeerConnection();
  pc.addTransceiver(camera, {{ direction: "sendonly" }});
  await pc.setLocalDescription(await pc.createOffer());
  await ({GATHERED})(pc);
  window.__pc = pc;
  return pc.localDescription.sdp;
}}"""
VIEWER = f"""async (sdp) => {{
  (await {CAMERA}).getTracks().forEach((track) => track.stop());
  const pc = new RTCPeerConnection();
  window.__pc = pc;
  await pc.setRemoteDescription({{ type: "offer", sdp }});
  await pc.setLocalDescription(await pc.createAnswer());
  await ({GATHERED})(pc);
  return pc.localDescription.sdp;
}}"""
# The relayed video's jitter buffer: total seconds frames waited, frames out.
JITTER = """async () => {
  let out = { delay: 0, emitted: 0, frames: 0 };
  (await window.__pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      out = { delay: s.jitterBufferDelay || 0, emitted: s.jitterBufferEmittedCount || 0,
              frames: s.framesDecoded || 0 };
    }
  });
  return out;
}"""


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    """The browser runs in the loopback-only namespace (``browser`` takes it by this name)."""
    return loopback_netns


async def page_on_loopback(browser: Any) -> Any:
    """A blank page at a loopback address (a secure context: it may ask for the camera)."""
    page = await (await browser.new_context()).new_page()
    await page.route(ORIGIN + "/", lambda route: route.fulfill(body="<!doctype html>"))
    await page.goto(ORIGIN + "/")
    return page


async def waited_ms(page: Any, seconds: float = 1.0) -> float:
    """How long the frames of the next ``seconds`` waited in the viewer's jitter buffer (mean)."""
    first = await page.evaluate(JITTER)
    await asyncio.sleep(seconds)  # a measuring window: time itself is what is measured
    last = await page.evaluate(JITTER)
    emitted = last["emitted"] - first["emitted"]
    assert emitted > 0, "no frame came out of the viewer's jitter buffer"
    return 1000 * (last["delay"] - first["delay"]) / emitted


async def until(page: Any, wanted: Any) -> list[float]:
    """Windows of ``waited_ms`` until one satisfies ``wanted`` (at most 20 s); all of them."""
    seen: list[float] = []
    async with asyncio.timeout(20):
        while not seen or not wanted(seen[-1]):
            seen.append(await waited_ms(page))
    return seen


async def test_a_viewer_holds_the_relayed_picture_as_long_as_the_recorder_asks(
    browser: Any, netns: NetNs, tmp_path: Path
) -> None:
    with netns.entered():
        recorder = Recorder(tmp_path / "recordings", host_addresses=["127.0.0.1"])
        try:
            source = await page_on_loopback(browser)
            answer = await recorder.start(KEY, await source.evaluate(SOURCE), now=datetime.now(UTC))
            await source.evaluate(
                "(sdp) => window.__pc.setRemoteDescription({type: 'answer', sdp})", answer
            )
            fanout = recorder.legs[KEY].fanout
            assert fanout is not None and fanout.hold is not None
            assert fanout.hold() == 0  # loopback: nothing was retransmitted
            asked = {"ms": HOLD_MS}
            fanout.hold = lambda: asked["ms"]  # as for a lossy uplink
            viewers = []
            for name in ("held", "plain"):
                page = await page_on_loopback(browser)
                offer = await recorder.relay_offer(KEY, name)
                answered = await page.evaluate(VIEWER, offer)
                assert accepted_id(answered) == OFFER_ID  # Chromium took the extension
                assert await recorder.relay_answer(KEY, name, answered)
                viewers.append(page)
                fanout.hold = lambda: 0  # the second viewer: a hold of 0 sends nothing
            held, plain = viewers
            for page in viewers:
                await page.wait_for_function(
                    "() => window.__pc.getStats().then((report) => { window.__frames ="
                    " [...report.values()].find((s) => s.type === 'inbound-rtp'"
                    " && s.kind === 'video')?.framesDecoded || 0; }) && window.__frames > 25",
                    timeout=20_000,
                )
            # Chromium moves its delay towards a new minimum by about 100 ms a
            # second: the held viewer's frames come to wait about the hold.
            climbed = await until(held, lambda ms: ms >= HOLD_MS - 50)
            assert max(climbed) < HOLD_MS + 150, climbed
            assert await waited_ms(plain) < 150
            # The hold is given back (the uplink needed no repair for a while).
            asked["ms"] = 0
            await until(held, lambda ms: ms < 150)
            assert await waited_ms(plain) < 150
        finally:
            await recorder.close()
