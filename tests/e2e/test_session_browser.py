"""A dashboard whose session ends while it is open, in a real browser.

The server closes the live-updates socket of a session that ended (signed out
in another tab, expired, revoked). The page used to reconnect with backoff
until it went away, each attempt refused (the browser logs "HTTP
Authentication failed"); a fresh-clone CI run caught one such attempt on the
way from the logout button to the login page. Now the socket stops for good
and the page goes to the login page, back to itself after it; signing out on
the page itself goes to the login page once, without a refused reconnect.
When a list the page reloads is refused as the socket closes, the page goes
there once (``tests/js/session_ended.test.mjs``): the second navigation aborted
the first, and with it the wait for it (a fresh-clone CI run).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from .conftest import csrf

pytestmark = pytest.mark.browser


async def dashboard(open_as: Any, username: str) -> tuple[Any, Any, list[str]]:
    """The user's dashboard with its live updates on; the sockets it opens from now on."""
    _, page, problems = await open_as(username)
    await page.locator('#push-status[data-status="online"]').wait_for()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    return page, problems, sockets


async def no_problem(page: Any, problems: Any) -> None:
    """Nothing in the console but what the session's end refused."""
    problems.forget_refused_after_sign_out()
    assert await problems.collect(page) == []


async def test_a_session_ended_elsewhere_sends_the_dashboard_to_the_login_page(
    open_as: Any,
) -> None:
    page, problems, sockets = await dashboard(open_as, "clinic1")
    # Signed out in another tab of the same browser (same cookie).
    response = await page.request.delete("/api/session", headers=await csrf(page))
    assert response.status == 204, await response.text()
    await page.wait_for_url(lambda url: urlsplit(url).path == "/login")
    assert parse_qs(urlsplit(page.url).query) == {"next": ["/clinic"]}
    await page.locator("#username").wait_for()
    assert sockets == []  # no reconnect was tried
    await no_problem(page, problems)


async def test_signing_out_goes_to_the_login_page_without_a_refused_reconnect(
    open_as: Any,
) -> None:
    page, problems, sockets = await dashboard(open_as, "cardio1")
    await page.click("#logout")
    await page.wait_for_url(lambda url: urlsplit(url).path == "/login")
    assert urlsplit(page.url).query == ""
    await page.locator("#username").wait_for()
    assert sockets == []
    await no_problem(page, problems)
