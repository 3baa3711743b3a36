"""The HTML pages: login, the role dashboards, and the static files they load.

Page handlers render the frame of a page (header, forms, labels) and no patient
data: each page's ES module fetches its lists from the JSON API, so that every read
of patient data is checked and audited in one place (``web/api.py``). What the
scripts need from the server (the page's account summary, translated strings)
travels in ``<script type="application/json">`` blocks, which the strict CSP allows
because they are never executed.

Wiring: ``create_app`` calls ``setup_pages(app)`` after storing ``SETTINGS`` and
before the app starts. The auth middleware sets ``request[SESSION]``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from records import store
from records.models import Account
from signaling import policy
from signaling.auth import Session
from web.i18n import JS_STRINGS, LOCALE_COOKIE, LOCALES, I18n, Localizer
from web.keys import CLOCK, DB, SESSION, SETTINGS

log = logging.getLogger(__name__)

I18N = web.AppKey("i18n", I18n)

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Where "/" sends each role; roles not listed get the plain home page.
ROLE_HOME = {
    "clinic_doctor": "/clinic",
    "specialist": "/queue",
    "coordinator": "/coordinator",
}

LANG_COOKIE_MAX_AGE = 365 * 24 * 3600


def setup_pages(app: web.Application) -> None:
    """Add the page routes, the ``/static/`` route and the jinja2 environments."""
    app[I18N] = I18n()
    app.router.add_get("/", home, name="home")
    app.router.add_get("/login", login_page, name="login")
    app.router.add_get("/clinic", clinic_page, name="clinic")
    app.router.add_get("/queue", queue_page, name="queue")
    app.router.add_get("/coordinator", coordinator_page, name="coordinator")
    app.router.add_static("/static/", STATIC_DIR, name="static")


# -- helpers ------------------------------------------------------------------------


def localizer(request: web.Request) -> Localizer:
    """The localizer chosen by the ``tc_lang`` cookie or the configured default."""
    default = request.app[SETTINGS].default_locale if SETTINGS in request.app else "zh_CN"
    return request.app[I18N].choose(request.cookies.get(LOCALE_COOKIE), default)


def _switch_language(request: web.Request) -> None:
    """Handle ``?lang=``: set the cookie and redirect to the same page without it."""
    lang = request.query.get("lang")
    if lang is None:
        return
    rest = [(k, v) for k, v in request.query.items() if k != "lang"]
    location = request.path + (f"?{urlencode(rest)}" if rest else "")
    response = web.HTTPSeeOther(location)
    if lang in LOCALES:
        response.set_cookie(
            LOCALE_COOKIE,
            lang,
            max_age=LANG_COOKIE_MAX_AGE,
            path="/",
            samesite="Lax",
            httponly=True,
            secure=request.app[SETTINGS].tls if SETTINGS in request.app else False,
        )
    raise response


def _safe_next(value: str | None) -> str:
    """A local path to go to after login; anything else (other origins) becomes "/"."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _require_session(request: web.Request, *roles: str) -> Session:
    """The session, or a redirect to the login page (or home, for another role)."""
    session: Session | None = request.get(SESSION)
    if session is None:
        target = request.path_qs
        raise web.HTTPSeeOther("/login?" + urlencode({"next": target}))
    if roles and session.account.role not in roles:
        raise web.HTTPSeeOther("/")
    return session


async def _institution_name(request: web.Request, account: Account) -> str:
    # The account's own institution is not patient data; a direct lookup is enough.
    if DB not in request.app:
        return ""
    async with request.app[DB].read() as conn:
        institution = await store.get_institution(conn, account.institution_id)
    return institution.name if institution else ""


def _today(request: web.Request) -> datetime:
    clock = request.app.get(CLOCK)
    return clock.now() if clock is not None else datetime.now(UTC)


def _account_data(request: web.Request, account: Account) -> dict[str, Any]:
    today = _today(request).date()
    return {
        "id": account.id,
        "display_name": account.display_name,
        "role": account.role,
        "institution_id": account.institution_id,
        "department_ids": sorted(account.department_ids),
        "practice_years": account.years_of_practice(today),
        "eligible": policy.may_practise_remotely(account, today),
    }


async def render(
    request: web.Request,
    template: str,
    *,
    page: str,
    session: Session | None,
    page_data: dict[str, Any] | None = None,
    **context: Any,
) -> web.Response:
    """Render ``template`` in the request's language with the common page context."""
    loc = localizer(request)
    account = session.account if session else None
    data: dict[str, Any] = {"locale": loc.lang_tag, "page": page}
    if account is not None:
        data["account"] = _account_data(request, account)
    data.update(page_data or {})
    html = loc.env.get_template(template).render(
        page=page,
        locale=loc.locale,
        lang_tag=loc.lang_tag,
        locales=LOCALES,
        account=account,
        role_label=loc.gettext(_ROLE_LABELS.get(account.role, account.role)) if account else "",
        institution=await _institution_name(request, account) if account else "",
        csrf_token=session.csrf_token if session else "",
        strings=loc.js_strings(),
        page_data=data,
        **context,
    )
    response = web.Response(text=html, content_type="text/html", charset="utf-8")
    # Pages carry a CSRF token and the user's name: never store them in a cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Language"] = loc.lang_tag
    response.headers["Vary"] = "Cookie"
    return response


_ROLE_LABELS = {
    key.removeprefix("role."): msgid for key, msgid in JS_STRINGS.items() if key.startswith("role.")
}


# -- handlers -----------------------------------------------------------------------


async def home(request: web.Request) -> web.StreamResponse:
    """Send each role to its dashboard; others get a plain page about their account."""
    _switch_language(request)
    session = _require_session(request)
    target = ROLE_HOME.get(session.account.role)
    if target is not None:
        raise web.HTTPSeeOther(target)
    return await render(request, "home.html", page="home", session=session)


async def login_page(request: web.Request) -> web.StreamResponse:
    """The login form (the script posts it to ``/api/session``)."""
    _switch_language(request)
    next_path = _safe_next(request.query.get("next"))
    session: Session | None = request.get(SESSION)
    if session is not None:
        raise web.HTTPSeeOther(next_path)
    return await render(
        request, "login.html", page="login", session=None, page_data={"next": next_path}
    )


async def clinic_page(request: web.Request) -> web.StreamResponse:
    """The clinic doctor's dashboard: patients, consent, requests."""
    _switch_language(request)
    session = _require_session(request, "clinic_doctor")
    return await render(request, "clinic.html", page="clinic", session=session)


async def queue_page(request: web.Request) -> web.StreamResponse:
    """The specialist's queue of waiting requests and their own consultations."""
    _switch_language(request)
    session = _require_session(request, "specialist")
    return await render(request, "queue.html", page="queue", session=session)


async def coordinator_page(request: web.Request) -> web.StreamResponse:
    """The consultation centre: roster, waiting and escalated requests, assignment."""
    _switch_language(request)
    session = _require_session(request, "coordinator")
    return await render(request, "coordinator.html", page="coordinator", session=session)
