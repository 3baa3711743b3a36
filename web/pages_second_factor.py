"""The login's second step: enrolling an authenticator app, or entering its code.

``/login/second-factor`` is where a session that still owes the second factor is
sent (``web.auth``): without an enrolled factor it shows the QR code of a new
secret (and the secret as text, for typing it in), confirmed with a code, after
which the recovery codes are shown once; with one it asks for the code. The
script (``second-factor.js``) posts to the API; the rules are in
``signaling/workflow/second_factor.py``.
"""

from __future__ import annotations

import segno
from aiohttp import web

from signaling.workflow.auth import Session
from web.auth import actor
from web.keys import SECOND_FACTOR, SESSION
from web.pages import _safe_next, _switch_language, render


def setup(app: web.Application) -> None:
    """Add the page's route (``create_app`` calls it after ``setup_pages``)."""
    app.router.add_get("/login/second-factor", second_factor_page, name="second-factor")


def qr_svg(uri: str) -> str:
    """The otpauth URI as an inline SVG QR code (no script, no external image)."""
    # Quiet zone of 4 modules, as scanners expect; a viewBox without a size, so
    # the stylesheet scales it whole. The markup is segno's own (made from the
    # server's URI, never from user input).
    return str(segno.make(uri, error="m").svg_inline(scale=5, border=4, omitsize=True))


def grouped(secret: str) -> str:
    """The base32 secret in groups of four, easier to type in by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


async def second_factor_page(request: web.Request) -> web.StreamResponse:
    """Enrol an authenticator app, or enter its code, to finish logging in."""
    _switch_language(request)
    next_path = _safe_next(request.query.get("next"))
    session: Session | None = request.get(SESSION)
    if session is None:
        raise web.HTTPSeeOther("/login")
    if not session.second_factor_pending:
        raise web.HTTPSeeOther(next_path)
    service = request.app[SECOND_FACTOR]
    if await service.enrolled(session.account.id):
        return await render(
            request,
            "second_factor.html",
            page="second-factor",
            session=session,
            page_data={"next": next_path, "mode": "code"},
            mode="code",
        )
    enrolment = await service.begin_enrolment(actor(request))
    return await render(
        request,
        "second_factor.html",
        page="second-factor",
        session=session,
        page_data={"next": next_path, "mode": "enrol"},
        mode="enrol",
        qr=qr_svg(enrolment.uri),
        secret=grouped(enrolment.secret),
    )
