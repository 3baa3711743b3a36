"""The physicians' second factor in real browsers: enrol, sign in with a code,
confirm one's identity before the call, then the call comes up.

The specialist enrols an authenticator (the test reads the key from the page and
computes codes with pyotp, as the phone would), accepts a request, signs in again
with a code, and, once the last check is older than ``reverify_window_seconds``,
is asked for a code by the call page before joining; the check is on the
consultation's timeline. Screenshots of the new pages (both languages, phone and
desktop width) go to ``screenshots/``.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from aiohttp import web

from records.schema import sessions
from web.keys import CLOCK, DB
from web.settings import Settings

from ..scenario import Scenario
from .conftest import CSP_LISTENER, LOOPBACK_NETWORKS, NetNs, csrf, video_flowing, watch
from .totp import Clock, code, enrol, enter_code, login_form, recovery_codes, verify_for_call

pytestmark = [pytest.mark.browser, pytest.mark.timing]  # codes follow the 30-second clock

WINDOW = 2 * 3600
WIDTHS = ((1280, 860), (390, 844))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The specialists give the second factor; the clinic doctor's one-step login
    # keeps the other side of the call simple.
    return dataclasses.replace(
        settings,
        ice_allowed_networks=LOOPBACK_NETWORKS,
        totp_roles=("specialist",),
        reverify_window_seconds=WINDOW,
    )


@pytest.fixture
def app_clock() -> Clock:
    # Three codes in a row: the third is of a step the clock has not reached,
    # and the server's clock is moved on to it rather than waited for.
    return Clock()


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


async def new_page(browser: Any, base_url: str, locale: str = "zh_CN") -> tuple[Any, Any]:
    context = await browser.new_context(
        base_url=base_url,
        viewport={"width": WIDTHS[0][0], "height": WIDTHS[0][1]},
        locale="en-US" if locale == "en" else "zh-CN",
    )
    await context.add_init_script(CSP_LISTENER)
    await context.add_cookies([{"name": "tc_lang", "value": locale, "url": base_url}])
    page = await context.new_page()
    return context, page


async def signed_out(page: Any, problems: Any) -> None:
    """On the login page after signing out (once: a second navigation aborted the
    first in a fresh-clone run)."""
    await page.wait_for_url(lambda url: urlsplit(url).path == "/login")
    problems.forget_refused_after_sign_out()


def expected_refusal(problems: Any) -> None:
    """The browser logs the 400 of the wrong code the test typed on purpose: only that."""
    assert [e for e in problems.console_errors if "status of 400" not in e] == []
    problems.console_errors.clear()


async def age_verification(app: web.Application, account_id: str) -> None:
    """Make the specialist's last check older than the window (as a long pause would)."""
    old = app[CLOCK].now() - timedelta(seconds=WINDOW + 60)

    def work(conn: sa.Connection) -> None:
        conn.execute(
            sessions.update()
            .where(sessions.c.account_id == account_id, sessions.c.verified_at.is_not(None))
            .values(verified_at=old)
        )

    await app[DB].run_write(work)


async def test_enrol_sign_in_with_a_code_verify_and_call(
    browser: Any,
    live_app: tuple[web.Application, str],
    open_as: Any,
    scenario: Scenario,
) -> None:
    app, base = live_app
    context, cardio = await new_page(browser, base, locale="en")
    problems = watch(cardio)

    # First sign-in: the enrolment page, then the queue.
    await login_form(cardio, "cardio1")
    assert await cardio.locator("#totp-qr svg").count() == 1
    secret = await enrol(cardio, app[CLOCK])
    assert cardio.url.endswith("/queue")

    # A request comes in and the specialist accepts it.
    c = await scenario.consultation("requested")
    item = cardio.locator(f'#queue-list li[data-consultation-id="{c.id}"]')
    await item.locator('button[data-action="accept"]').click()
    await cardio.locator(f'#mine-list li[data-consultation-id="{c.id}"]').wait_for()

    # Signing out and in again asks for the app's code.
    await cardio.click("#logout")
    await signed_out(cardio, problems)
    await login_form(cardio, "cardio1")
    assert await cardio.locator("#verify-title").count() == 1
    await enter_code(cardio, secret, app[CLOCK])
    assert cardio.url.endswith("/queue")

    # The clinic doctor is in the call already.
    _, clinic, clinic_problems = await open_as("clinic1")
    await clinic.goto(f"/consultations/{c.id}/call")
    await clinic.locator("#call-banner").wait_for()

    # Hours later the specialist joins: the page asks who they are first.
    await age_verification(app, c.specialist.account["id"])
    await cardio.goto(f"/consultations/{c.id}/call")
    await cardio.locator("#verify-dialog[open]").wait_for()
    # A wrong code is refused and said so; the dialog stays.
    await cardio.fill("#verify-code", "000000")
    await cardio.click("#verify-submit")
    error = cardio.locator('#verify-error[data-code="wrong_code"]')
    await error.wait_for()
    assert "wrong" in (await error.text_content() or "")
    expected_refusal(problems)
    await verify_for_call(cardio, secret, app[CLOCK])

    # Joined: both see each other's video, and the check is on the timeline.
    await video_flowing(cardio, 1, label="totp")
    await video_flowing(clinic, 1, label="totp")
    status, data = await c.clinic.get(f"{c.url}/timeline")
    assert status == 200
    checks = [e for e in data["events"] if e["kind"] == "identity_verified"]
    assert [e["actor"]["id"] for e in checks] == [c.specialist.account["id"]]
    assert await problems.collect(cardio) == []
    assert await clinic_problems.collect(clinic) == []
    await context.close()


async def shoot(page: Any, problems: Any, path: Path) -> None:
    for width, height in WIDTHS:
        await page.set_viewport_size({"width": width, "height": height})
        target = path.with_name(f"{path.stem}-{width}.png")
        await page.screenshot(path=str(target), full_page=True)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{target.name}: {overflow}px horizontal overflow"
    await page.set_viewport_size({"width": WIDTHS[0][0], "height": WIDTHS[0][1]})
    assert await problems.collect(page) == [], path.name


async def test_second_factor_screenshots(
    browser: Any,
    live_app: tuple[web.Application, str],
    scenario: Scenario,
    screenshots_dir: Path,
) -> None:
    """Enrolment, recovery codes, the code page and the call's check, zh and en, 1280 and 390."""
    app, base = live_app
    c = await scenario.consultation("requested")
    for locale, username in (("zh_CN", "resp1"), ("en", "cardio1")):
        context, page = await new_page(browser, base, locale=locale)
        problems = watch(page)
        await login_form(page, username)
        await shoot(page, problems, screenshots_dir / f"totp-enrol-{locale}")
        shown = await page.locator("#totp-secret").text_content()
        secret = "".join((shown or "").split())
        await page.fill("#code", await code(secret, app[CLOCK]))
        await page.click("#code-submit")
        await page.locator("#recovery-codes li").nth(9).wait_for()
        assert len(set(await recovery_codes(page))) == 10
        await shoot(page, problems, screenshots_dir / f"totp-recovery-{locale}")
        await page.click("#recovery-done")
        await page.wait_for_url(lambda url: "/login" not in url)

        await page.click("#logout")
        await signed_out(page, problems)
        await login_form(page, username)
        await page.fill("#code", "000000")
        await page.click("#code-submit")
        await page.locator('#code-error[data-code="wrong_code"]').wait_for()
        expected_refusal(problems)
        await shoot(page, problems, screenshots_dir / f"totp-code-{locale}")
        await enter_code(page, secret, app[CLOCK])

        if username == "cardio1":
            response = await page.request.post(
                f"/api/consultations/{c.id}/accept", headers=await csrf(page)
            )
            assert response.status == 200, await response.text()
            for lang in ("zh_CN", "en"):
                await age_verification(app, c.specialist.account["id"])
                await page.goto(f"/consultations/{c.id}/call?lang={lang}")
                await page.locator("#verify-dialog[open]").wait_for()
                await shoot(page, problems, screenshots_dir / f"totp-call-{lang}")
        await context.close()
