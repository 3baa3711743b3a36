"""A fast server restart in the middle of a recorded call, in real Chromium.

What a supervisor does after a crash: the server process is killed with
SIGKILL and started again at once on the same port and data directory. The
server runs as a process of its own (``python -m web.cli serve``) inside the
browsers' loopback-only network namespace (see conftest.py), where its
recorder's sockets live too; this test's thread enters the namespace for the
whole test, so its HTTP requests and Playwright's reach the server there.

The media between the two browsers does not go through the server, so it should
not stop: the gap in each page's received video is measured across the restart.
The pages reconnect with a random backoff; to make the case where one page is
back well before the other (the one that dropped media before the call pages
held their connections) happen every run, the second page's reconnects fail
for a set time after the first is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ..conftest import DB_NAME
from ..scenario import Scenario
from ..serverproc import ServerProcess
from .conftest import NetNs, video_flowing
from .restarts import (
    account_id,
    back_in_call,
    frames_in,
    partials_written,
    recording,
    rows_of,
    serve_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timing]

# The issue measured 2.3-2.8 s of dropped browser-to-browser video across such a
# restart before call pages held their connections; a held connection drops
# nothing (a frame interval, plus sampling and a loaded CI machine).
MAX_VIDEO_GAP_S = 1.5
# The pages reconnect with a random backoff, so one is back before the other
# by anything from nothing to a few seconds. The test makes that spread the
# same each run: the second page's reconnects fail until this long after the
# first page is back (the first then sees a room without the second).
LATER_S = 2.5


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


@pytest.fixture(autouse=True)
def inside(netns: NetNs) -> Iterator[None]:
    """The whole test in the namespace: the server only listens there."""
    with netns.entered():
        yield


@pytest.fixture
async def server(tmp_path: Path, netns: NetNs, demo_database: str) -> AsyncIterator[ServerProcess]:
    """The server process on the demo community (``demo_database`` put it in ``tmp_path``)."""
    # The browser-to-browser plane: its media does not pass through the server,
    # which is what this test measures across the restart (a relayed call's
    # picture stops with the server and comes back with it).
    proc = serve_in(netns, tmp_path, demo_database, media_plane="mesh")
    await proc.start()
    try:
        yield proc
    finally:
        await proc.kill()


@pytest.fixture
def live_server(server: ServerProcess) -> str:
    """The fixtures' base URL (open_as, scenario): the server process."""
    return server.base


# Page-side probes. The video gap: every 50 ms, the decoded frame count of each
# connection the page holds (getStats); the longest time without a new frame on
# any of them. The indicator: every data-state it shows, with the wall clock.
PROBES = """() => {
  window.__restartTest = { marker: true, states: [] };
  const t = window.__restartTest;
  const rec = document.getElementById("rec-indicator");
  t.states.push([Date.now(), rec.dataset.state]);
  new MutationObserver(() => t.states.push([Date.now(), rec.dataset.state])).observe(rec, {
    attributes: true,
    attributeFilter: ["data-state"],
  });
  // While holdSocket is set, the page's reconnects go to a path the server
  // does not have (they fail as against a server not up yet; the same origin,
  // as the page's CSP wants); an "online" event retries at once.
  const Real = window.WebSocket;
  window.WebSocket = class extends Real {
    constructor(url, protocols) {
      super(t.holdSocket ? `${url}-held` : url, protocols);
    }
  };
  t.gap = { max: 0, last: performance.now(), at: 0, seen: new Map(), busy: false };
  t.timer = setInterval(async () => {
    const g = t.gap;
    if (g.busy) return;
    g.busy = true;
    try {
      const c = window.__call;
      let progressed = false;
      for (const id of c.peers()) {
        const pc = c.pc(id);
        if (!pc || pc.connectionState === "closed") continue;
        let frames = 0;
        try {
          (await pc.getStats()).forEach((s) => {
            if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
          });
        } catch {
          continue;
        }
        const before = g.seen.get(pc);
        g.seen.set(pc, frames);
        if (before !== undefined && frames > before) progressed = true;
      }
      const now = performance.now();
      if (progressed) {
        if (now - g.last > g.max) {
          g.max = now - g.last;
          g.at = Date.now();
        }
        g.last = now;
      }
    } finally {
      g.busy = false;
    }
  }, 50);
}"""

GAP = """() => {
  const g = window.__restartTest.gap;
  clearInterval(window.__restartTest.timer);
  return { max: Math.max(g.max, performance.now() - g.last) / 1000, at: g.at };
}"""


async def test_after_a_fast_restart_both_pages_come_back_recorded_and_video_keeps_flowing(
    open_as: Any, scenario: Scenario, server: ServerProcess, tmp_path: Path, demo_database: str
) -> None:
    url = demo_database or f"sqlite+aiosqlite:///{tmp_path / DB_NAME}"
    _, clinic, clinic_problems = await open_as("clinic1", locale="en")
    _, cardio, cardio_problems = await open_as("cardio1", locale="en")
    pages = (clinic, cardio)
    names = {clinic: "clinic1", cardio: "cardio1"}
    cid = (await scenario.consultation("accepted")).id
    for page in pages:
        await page.goto(f"/consultations/{cid}/call")
    await asyncio.gather(*(recording(page) for page in pages))
    for page in pages:
        await page.locator('#rec-indicator[data-peers="2"]').wait_for()
        await video_flowing(page, 1, label="before")
    ids = {page: await account_id(page) for page in pages}
    connects = {page: await page.evaluate("window.__call.connects") for page in pages}
    # Both legs have written something a repair can keep.
    await partials_written(tmp_path / "recordings", 2, 40_000)
    for page in pages:
        await page.evaluate(PROBES)

    killed = datetime.now(UTC)
    await cardio.evaluate("window.__restartTest.holdSocket = true")
    await server.kill()
    await server.start()  # at once, as a supervisor would; repairs before it serves
    restarted = datetime.now(UTC)
    await recording(clinic, timeout_ms=60_000)
    # The clinic is back alone: the cardiologist's page comes back later (time
    # itself is what is being simulated here).
    await asyncio.sleep(LATER_S)
    await cardio.evaluate(
        "window.__restartTest.holdSocket = false; window.dispatchEvent(new Event('online'))"
    )

    # Both pages come back (same page, no reload) and are recorded again: their
    # own indicator, and the other's tile.
    for page in pages:
        await recording(page, timeout_ms=60_000)
        await back_in_call(page)
        await page.locator('#tiles .tile-remote[data-recorded="true"]').wait_for()
        await page.locator('#rec-indicator[data-peers="2"]').wait_for()
        await video_flowing(page, 1, label="after")
        assert await page.evaluate("window.__restartTest.marker")
        assert await page.evaluate("window.__call.connects") > connects[page]
    gaps = {names[page]: await page.evaluate(GAP) for page in pages}
    for user, gap in gaps.items():
        at = datetime.fromtimestamp(gap["at"] / 1000, UTC) if gap["at"] else None
        print(f"{user}: longest gap in received video {gap['max']:.3f} s (ended {at})")

    # The server's records: the crashed leg repaired, a new numbered leg since.
    rows = await rows_of(url)
    legs = {page: [r for r in rows if r["participant_id"] == ids[page]] for page in pages}
    for page in pages:
        assert [(r["part"], r["status"]) for r in legs[page]] == [
            (1, "recovered"),
            (2, "recording"),
        ], legs[page]
        # The indicator stopped saying "Recording" as the server went (it could
        # not tell), and said it again only once the server had the new leg.
        new_leg = legs[page][1]["started_at"].replace(tzinfo=UTC)
        late = (new_leg - restarted).total_seconds()
        print(f"{names[page]}: recorded again {late:.3f} s after the server was back")
        states = await page.evaluate("window.__restartTest.states")
        shown = [(datetime.fromtimestamp(ms / 1000, UTC), s) for ms, s in states]
        after_kill = [(t, s) for t, s in shown if t >= killed]
        lost = next((i for i, (_, s) in enumerate(after_kill) if s == "unknown"), None)
        assert lost is not None, f"it kept saying Recording: {states}"
        assert after_kill[lost][0] - killed < timedelta(seconds=3), states
        again = [t for t, s in after_kill[lost:] if s == "recording"]
        assert again and again[0] >= new_leg, (again, new_leg, states)

    # The media between the browsers did not stop (the server is not on its path).
    for gap in gaps.values():
        assert gap["max"] < MAX_VIDEO_GAP_S, gaps

    # The call ends normally; both parts of each participant hold video.
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
    for row in rows:
        assert (row["part"], row["status"]) in ((1, "recovered"), (2, "finished")), row
        assert frames_in(tmp_path / "recordings" / row["path"]) > 0, row
    for problems in (clinic_problems, cardio_problems):
        assert problems.page_errors == []
