"""Browser fixtures: the real app on a loopback port, and Debian's Chromium.

Playwright's own browser download cannot work on these machines, so it drives
``/usr/bin/chromium``. Without that binary the browser tests fail under CI (where
``.ci/run`` installs it) and are skipped elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from records.demo import DEMO_PASSWORD
from web.app import create_app
from web.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "screenshots"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
async def live_server(settings: Settings) -> AsyncIterator[str]:
    """The real app with the demo community on 127.0.0.1 (ephemeral port); its base URL.

    Uses the system clock (not the manual one): the browser shows times relative
    to its own clock.
    """
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium driven by Playwright's async API."""
    _require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
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
    ``open_as(None)`` stops at the login page.
    """
    contexts: list[Any] = []

    async def login(
        username: str | None,
        *,
        locale: str | None = None,
        viewport: dict[str, int] | None = None,
    ) -> tuple[Any, Any, PageProblems]:
        context = await browser.new_context(
            base_url=live_server,
            viewport=viewport or {"width": 1400, "height": 900},
            # The browser's own locale too: date inputs follow it, not the page.
            locale="en-US" if locale == "en" else "zh-CN",
        )
        contexts.append(context)
        await context.add_init_script(CSP_LISTENER)
        if locale is not None:
            await context.add_cookies([{"name": "tc_lang", "value": locale, "url": live_server}])
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
