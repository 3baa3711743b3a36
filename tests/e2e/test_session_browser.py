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

import asyncio
import contextlib
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


async def test_signing_out_while_the_lists_load_opens_no_live_socket(
    open_as: Any,
) -> None:
    # The queue page connects its live updates once its lists are in, and the
    # header's sign-out button works before that. Signed out meanwhile, the
    # page connected anyway: the server refused the handshake (the session was
    # gone) and the browser logged "HTTP Authentication failed" (a fresh-clone
    # CI run, the second-factor screenshots). Here the lists are held until the
    # server has ended the session, and its answer until the lists are in.
    _, page, problems = await open_as("cardio1")
    await page.locator('#push-status[data-status="online"]').wait_for()
    lists_held, session_ended, lists_in = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hold_lists(route: Any) -> None:
        lists_held.set()
        await session_ended.wait()
        await route.continue_()  # refused now: 401
        lists_in.set()

    sockets: list[str] = []
    opened = asyncio.Event()

    def on_socket(ws: Any) -> None:
        sockets.append(ws.url)
        opened.set()

    async def end_session(route: Any) -> None:
        response = await route.fetch()  # the server ends the session
        session_ended.set()
        await lists_in.wait()
        # The page connected within milliseconds of its lists before: a second
        # for it to do so while the sign-out's answer is held.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(opened.wait(), 1.0)
        await route.fulfill(response=response)

    await page.route("**/api/queue", hold_lists)
    await page.route("**/api/session", end_session)
    page.on("websocket", on_socket)
    await page.reload(wait_until="domcontentloaded")
    await asyncio.wait_for(lists_held.wait(), 10)
    await page.click("#logout")
    await page.wait_for_url(lambda url: urlsplit(url).path == "/login")
    await page.locator("#username").wait_for()
    assert lists_in.is_set()
    assert sockets == []  # no live socket was opened after the sign-out
    await no_problem(page, problems)
