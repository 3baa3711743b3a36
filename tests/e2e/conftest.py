"""Browser fixtures: the real app on a loopback port, and Debian's Chromium.

Playwright's own browser download cannot work on these machines, so it drives
``/usr/bin/chromium``. Without that binary the browser tests fail under CI (where
``.ci/run`` installs it) and are skipped elsewhere.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from records.clock import Clock
from records.demo import DEMO_PASSWORD
from web.app import create_app
from web.settings import Settings

from ..requirements import require
from ..scenario import Scenario, over_http

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # WebRTC gathers 127.0.0.1 and ::1 too; the call tests relay only those.
    "--allow-loopback-in-peer-connection",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "screenshots"


def _require_chromium() -> None:
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")


# -- a network namespace with loopback only -------------------------------------------
#
# On a host with other interfaces, Chromium pairs its own non-loopback host
# candidates with the peer's loopback ones (192.0.2.2 -> 127.0.0.1 was selected
# here), whatever signaling filters. Call tests therefore run the browsers (and
# coturn) in a network namespace whose only interface is lo; the app listens
# there too (a second socket on the same port, made from inside the namespace),
# and on the host's loopback for Playwright's API requests.

CLONE_NEWNET = 0x40000000


@dataclass
class NetNs:
    """A network namespace kept alive by a sleeping process."""

    process: subprocess.Popen[bytes]

    @property
    def path(self) -> str:
        return f"/proc/{self.process.pid}/ns/net"

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return [shutil.which("nsenter") or "nsenter", f"--net={self.path}", *argv]

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with this thread in the namespace (sockets made there stay there)."""
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the test namespace failed")
            try:
                yield
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back failed")
        finally:
            os.close(own)
            os.close(target)

    def listen(self, port: int) -> socket.socket:
        """A listening TCP socket on 127.0.0.1:``port`` inside the namespace."""
        with self.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        sock.setblocking(False)
        return sock


@pytest.fixture
def netns() -> NetNs | None:
    """No namespace by default; call tests override this with ``loopback_netns``."""
    return None


@pytest.fixture
def loopback_netns() -> Iterator[NetNs]:
    """A fresh network namespace with lo up and nothing else (needs root)."""
    tools = {t: shutil.which(t) for t in ("unshare", "nsenter", "ip")}
    usable = os.geteuid() == 0 and all(tools.values())
    require(usable, "call tests need root, unshare, nsenter and ip for a loopback-only netns")
    script = f"{tools['ip']} link set lo up && echo ready && exec sleep 3600"
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [str(tools["unshare"]), "--net", "/bin/sh", "-c", script],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    ready = process.stdout.readline()  # EOF (b"") if the shell failed
    process.stdout.close()
    if ready.strip() != b"ready":
        process.kill()
        process.wait()
        pytest.fail("could not make a network namespace")
    try:
        yield NetNs(process)
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def app_clock() -> Clock | None:
    """The live app's clock: the system clock (None) unless a test module gives one."""
    return None


@pytest.fixture
async def live_app(
    settings: Settings, netns: NetNs | None, app_clock: Clock | None
) -> AsyncIterator[tuple[web.Application, str]]:
    """The real app with the demo community on 127.0.0.1 (ephemeral port), and its base URL.

    Runs in the test's own event loop, so a test can reach into the app (e.g. close
    a socket from the server side). Uses the system clock (not the manual one): the
    browser shows times relative to its own clock.
    """
    app = create_app(settings, clock=app_clock)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    if netns is not None:
        # The same address inside the browsers' namespace.
        await web.SockSite(runner, netns.listen(port)).start()
    try:
        yield app, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def live_server(live_app: tuple[web.Application, str]) -> str:
    """The base URL of ``live_app``."""
    return live_app[1]


@pytest.fixture
async def scenario(live_server: str) -> AsyncIterator[Scenario]:
    """The tests' scenario builder against ``live_server``, with API sessions of its
    own beside the browsers' (the live app runs on the system clock: no escalation)."""
    async with over_http(live_server) as built:
        yield built


@pytest.fixture
async def browser(netns: NetNs | None, tmp_path: Path) -> AsyncIterator[Any]:
    """A headless Chromium driven by Playwright's async API (inside ``netns`` if set)."""
    _require_chromium()
    from playwright.async_api import async_playwright

    executable = CHROMIUM
    if netns is not None:
        # Playwright talks to Chromium over pipes, so it can live in the namespace.
        executable = tmp_path / "chromium-in-netns"
        executable.write_text(
            f'#!/bin/sh\nexec nsenter --net={netns.path} {CHROMIUM} "$@"\n', encoding="utf-8"
        )
        executable.chmod(0o755)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class PageProblems:
    """Console errors, uncaught exceptions and CSP violations seen by one page."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    async def collect(self, page: Any) -> list[str]:
        """Everything seen so far, including the CSP violations the page recorded."""
        found = await page.evaluate("window.__cspViolations || []")
        self.csp_violations = [f"CSP: {v}" for v in found]
        return [*self.console_errors, *self.page_errors, *self.csp_violations]

    def forget_refused_after_sign_out(self) -> None:
        """Drop the 401s the browser logged for requests refused as the session ended.

        A dashboard reloads its lists when its live-updates socket says hello; a
        reload asked for while the session ends is refused, and the browser logs
        it. The page then goes to the login page once (``ui.js`` ``sessionEnded``),
        as it should: not a problem of the page.
        """
        self.console_errors[:] = [e for e in self.console_errors if "status of 401" not in e]


# Runs in the page before its own scripts: CSP violations are not always console
# errors, so they are collected from the securitypolicyviolation event as well.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


def watch(page: Any) -> PageProblems:
    """Start collecting a page's problems (call before the first navigation)."""
    problems = PageProblems()

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            problems.console_errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.page_errors.append(str(exc)))
    return problems


Login = Callable[..., Awaitable[tuple[Any, Any, PageProblems]]]


@pytest.fixture
async def open_as(browser: Any, live_server: str) -> AsyncIterator[Login]:
    """``await open_as("clinic1", locale="zh_CN", viewport=...)``: a logged-in page.

    Each call makes a new browser context (its own cookies), logs in through the
    login form and waits for the role's page. Returns (context, page, problems).
    ``open_as(None)`` stops at the login page; ``base=`` logs in on another
    server than ``live_server`` (another process of a cluster).
    """
    contexts: list[Any] = []

    async def login(
        username: str | None,
        *,
        locale: str | None = None,
        viewport: dict[str, int] | None = None,
        base: str | None = None,
    ) -> tuple[Any, Any, PageProblems]:
        base = base or live_server
        context = await browser.new_context(
            base_url=base,
            viewport=viewport or {"width": 1400, "height": 900},
            # The browser's own locale too: date inputs follow it, not the page.
            locale="en-US" if locale == "en" else "zh-CN",
        )
        contexts.append(context)
        await context.add_init_script(CSP_LISTENER)
        if locale is not None:
            await context.add_cookies([{"name": "tc_lang", "value": locale, "url": base}])
        page = await context.new_page()
        problems = watch(page)
        await page.goto("/login")
        if username is None:  # stay on the login page
            return context, page, problems
        await page.fill("#username", username)
        await page.fill("#password", DEMO_PASSWORD)
        await page.click("#login-submit")
        await page.wait_for_url(lambda url: "/login" not in url)
        return context, page, problems

    yield login
    for context in contexts:
        await context.close()


@pytest.fixture
def screenshots_dir() -> Path:
    """Where screenshots go (gitignored)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS


# -- calls ----------------------------------------------------------------------------

# Call tests keep every packet on loopback: only these candidates are relayed.
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")

# Every RTCPeerConnection a page makes (an init script), so that a test can
# look at connections the page does not expose, such as the recording leg.
COUNT_PCS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""


async def invite(page: Any, consultation_id: str, username: str) -> None:
    """Add ``username`` to the call, as the clinic doctor on ``page`` does."""
    response = await page.request.post(
        f"/api/consultations/{consultation_id}/participants",
        headers=await csrf(page),
        data={"username": username},
    )
    assert response.status == 201, await response.text()


# How long a pre-call check may take (each path: a second of pings, 6 s of video).
CHECK_MS = 90_000


async def run_check(page: Any, cid: str) -> dict[str, Any]:
    """Open the pre-call check page, run it, answer the speaker question; what the
    page measured and the kept check (``window.__precall``). The township
    benchmark runs it over its impaired link (``--precall``)."""
    await page.goto(f"/consultations/{cid}/precall")
    await page.click("#pc-start")
    await page.click("#pc-tone")
    await page.click("#pc-heard")
    await page.locator("body[data-verdict]").wait_for(state="attached", timeout=CHECK_MS)
    state: dict[str, Any] = await page.evaluate("window.__precall")
    return state


# Page-side helpers over the call page's test hook (window.__call).
CALL_JS = """
window.__callTest = {
  async stats(id) {
    const pc = window.__call.pc(id);
    if (!pc) return null;
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    let frames = 0, width = 0, audioBytes = 0, pair = null;
    for (const s of byId.values()) {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        frames += s.framesDecoded || 0;
        width = Math.max(width, s.frameWidth || 0);
      }
      if (s.type === "inbound-rtp" && s.kind === "audio") audioBytes += s.bytesReceived || 0;
      if (s.type === "transport" && s.selectedCandidatePairId) {
        pair = byId.get(s.selectedCandidatePairId);
      }
    }
    if (!pair) {
      for (const s of byId.values()) {
        if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
      }
    }
    const cand = (c) => c && {
      address: c.address || c.ip,
      type: c.candidateType,
      protocol: c.protocol,
      relayProtocol: c.relayProtocol || null,
    };
    return {
      frames, width, audioBytes,
      local: pair ? cand(byId.get(pair.localCandidateId)) : null,
      remote: pair ? cand(byId.get(pair.remoteCandidateId)) : null,
    };
  },
  // Stats of every peer, refreshed in the background: wait_for_function's
  // predicate must be synchronous (a returned promise counts as truthy).
  latest: {},
  watch() {
    if (this.timer) return;
    this.timer = setInterval(async () => {
      const c = window.__call;
      if (!c || !c.pc) return;
      const latest = {};
      for (const id of c.peers()) {
        const s = await this.stats(id);
        const video = c.remoteVideo(id);
        if (s) latest[id] = { ...s, videoWidth: video ? video.videoWidth : 0 };
      }
      this.latest = latest;
    }, 200);
  },
  // True once every remote video of `count` peers has a size and its decoded
  // frame count has grown by `more` since the first call with this `token`.
  flowing(count, token, more) {
    this.watch();
    const ids = Object.keys(this.latest);
    if (ids.length !== count) return false;
    window.__frameBase = window.__frameBase || {};
    const base = (window.__frameBase[token] = window.__frameBase[token] || {});
    let ok = true;
    for (const id of ids) {
      const s = this.latest[id];
      if (!(id in base)) base[id] = s.frames;
      if (!(s.videoWidth > 0 && s.frames >= base[id] + more)) ok = false;
    }
    return ok;
  },
};
"""


async def watch_call(page: Any) -> None:
    """Install the page-side helpers (once per page) and start sampling stats."""
    await page.evaluate(f"(window.__callTest || ({CALL_JS.strip().rstrip(';')})).watch()")


async def video_flowing(page: Any, peers: int, *, label: str, timeout_ms: float = 20_000) -> None:
    """Wait until ``page`` shows ``peers`` remote videos whose decoded frames rise.

    ``label`` names the baseline: frames must rise past what they were at the
    first wait with the same label.
    """
    await watch_call(page)
    try:
        await page.wait_for_function(
            "([n, token]) => window.__callTest.flowing(n, token, 10)",
            arg=[peers, label],
            polling=250,
            timeout=timeout_ms,
        )
    except PlaywrightTimeoutError:
        # Say what the page saw, so that a failure on a CI machine can be read.
        seen = await page.evaluate(CALL_DIAGNOSIS)
        raise AssertionError(f"no video flowing ({label}) on {page.url}: {seen}") from None


# The call's state as the page sees it: signaling, each connection (with what it
# went through: states, offers and answers, ICE restarts, candidates), the last stats.
CALL_DIAGNOSIS = """() => {
  const c = window.__call;
  if (!c) return "no call page";
  return JSON.stringify({
    state: c.state,
    connects: c.connects,
    peers: c.peers().map((id) => {
      const pc = c.pc(id);
      return {
        id,
        pc: pc ? [pc.signalingState, pc.iceConnectionState, pc.connectionState] : null,
        history: c.history(id),
      };
    }),
    latest: window.__callTest && window.__callTest.latest,
  });
}"""


async def selected_pairs(page: Any) -> list[dict[str, Any]]:
    """The selected candidate pair (local and remote candidate) towards each peer."""
    await watch_call(page)
    result: list[dict[str, Any]] = await page.evaluate(
        "Promise.all(window.__call.peers().map((id) => window.__callTest.stats(id)))"
    )
    return result


async def csrf(page: Any) -> dict[str, str]:
    """The CSRF header of the page's session, for API calls through its context."""
    token = await page.get_attribute('meta[name="csrf-token"]', "content")
    return {"X-CSRF-Token": token or ""}
