"""Steps of the physicians' second factor in Chromium, for any browser test.

``enrol(page) -> secret`` on the enrolment page (where a first login of a role in
``totp_roles`` lands), ``enter_code(page, secret)`` on the code page of a later
login, ``verify_for_call(page, secret)`` when the call page asks for the code
before joining. The secret is read from the page (the text shown for typing it
in) and the codes are computed with pyotp, as the phone would.

The server accepts each 30-second step's code once (and one step of drift): the
codes handed out here are of successive steps, so several steps in quick
succession never reuse one; when both the current and the next step are spent,
``code`` waits for the clock (the only way a new code comes), or, for an app
that runs on a ``Clock`` of this module, moves that clock on to the step (as
the wait would, without the wait: up to 30 s of a serial test run).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp

from records.demo import DEMO_PASSWORD

STEP = 30
# The last step each secret's code was handed out for (module-wide: a secret
# belongs to one account, which one test enrols).
_last: dict[str, int] = {}


class Clock:
    """The live app's clock for a test that gives many codes: the system clock,
    ahead by as much as ``code`` has moved it on."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.ahead)


async def code(secret: str, clock: Any = None) -> str:
    """A code the server has not seen yet for ``secret`` (waits if it must).

    ``clock``: the app's clock; a ``Clock`` is moved on instead of waited for."""
    shifted = clock if isinstance(clock, Clock) else None
    now = shifted.now().timestamp() if shifted is not None else time.time()
    step = int(now) // STEP
    want = max(step, _last.get(secret, step - 1) + 1)
    if want > step + 1:
        # The server accepts the next step's code once the current step is
        # ``want - 1``: wait for the clock to get there.
        wait = (want - 1) * STEP - now + 0.5
        if shifted is not None:
            shifted.ahead += wait
        else:
            await asyncio.sleep(wait)
    _last[secret] = want
    return pyotp.TOTP(secret).at(want * STEP)


async def login_form(page: Any, username: str, password: str = DEMO_PASSWORD) -> None:
    """Sign in through the login form and land on the second-factor page."""
    await page.goto("/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-submit")
    await page.wait_for_url("**/login/second-factor**")


async def enrol(page: Any, clock: Any = None) -> str:
    """Enrol an authenticator on the enrolment page; the secret (codes kept on screen
    are confirmed and the page goes on). Returns the base32 secret."""
    shown = await page.locator("#totp-secret").text_content()
    secret = "".join((shown or "").split())
    await page.fill("#code", await code(secret, clock))
    await page.click("#code-submit")
    await page.locator("#recovery-codes li").nth(9).wait_for()
    await page.click("#recovery-done")
    await page.wait_for_url(lambda url: "/login" not in url)
    return secret


async def recovery_codes(page: Any) -> list[str]:
    """The recovery codes shown after enrolment (call before leaving that view)."""
    return [str(t) for t in await page.locator("#recovery-codes li").all_text_contents()]


async def enter_code(page: Any, secret: str, clock: Any = None) -> None:
    """Give the authenticator's code on the code page of a later login."""
    await page.fill("#code", await code(secret, clock))
    await page.click("#code-submit")
    await page.wait_for_url(lambda url: "/login" not in url)


async def verify_for_call(page: Any, secret: str, clock: Any = None) -> None:
    """Answer the call page's identity check; returns once the dialog has closed."""
    await page.locator("#verify-dialog[open]").wait_for()
    await page.fill("#verify-code", await code(secret, clock))
    await page.click("#verify-submit")
    await page.wait_for_function("() => !document.getElementById('verify-dialog').open")
