"""The HTML pages: login, the role dashboards, and the static files they load.

Page handlers render the frame of a page (header, forms, labels) and no patient
data: each page's ES module fetches its lists from the JSON API, so that every read
of patient data is checked and audited in one place (``web/api.py``). What the
scripts need from the server (the page's account summary, translated strings)
travels in ``<script type="application/json">`` blocks, which the strict CSP allows
because they are never executed. One exception: the replay page is rendered with
its replay (opened through the same audited service as its API), so that its
videos load with the page (``replay_page``).

Wiring: ``create_app`` calls ``setup_pages(app)`` after storing ``SETTINGS`` and
before the app starts. The auth middleware sets ``request[SESSION]``.
"""

from __future__ import annotations

import logging
import mimetypes
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from aiohttp import web

from records.models import Account
from records.vocab import ErrorCode
from signaling.errors import NotFound
from signaling.workflow import policy
from signaling.workflow.auth import Session
from signaling.workflow.consultations import Frame
from signaling.workflow.stats import STATS_ROLES
from web.api_recordings import replay_payload
from web.auth import actor, audit_refused
from web.fhir_strings import FHIR_IMPORT_STRINGS
from web.i18n import JS_STRINGS, LOCALE_COOKIE, LOCALES, N_, I18n, Localizer
from web.keys import CLOCK, CONSULTATIONS, DIRECTORY, REPLAY, SESSION, SESSION_MS, SETTINGS
from web.page_strings import CALL_STRINGS, CONSULTATION_STRINGS, RECORDS_STRINGS
from web.precall_strings import RESULT_STRINGS

log = logging.getLogger(__name__)

I18N = web.AppKey("i18n", I18n)

STATIC_DIR = Path(__file__).resolve().parent / "static"

# The vendored PDF.js ships as ``.mjs``; module scripts and module workers are
# refused unless served as JavaScript, and not every system's mime.types knows it.
mimetypes.add_type("text/javascript", ".mjs")

# Where "/" sends each role; roles not listed get the plain home page.
ROLE_HOME = {
    "clinic_doctor": "/clinic",
    "specialist": "/queue",
    "coordinator": "/coordinator",
    "reviewer": "/recordings",
    "admin": "/admin",
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
    app.router.add_get("/consultations/{consultation_id}", consultation_page, name="consultation")
    app.router.add_get("/consultations/{consultation_id}/call", call_page, name="call")
    app.router.add_get("/recordings", recordings_page, name="recordings")
    app.router.add_get("/consultations/{consultation_id}/replay", replay_page, name="replay")
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


# Printable ASCII without the space: what a path and query of this site look like
# once percent-encoded (``_require_session`` sends ``request.path_qs``, which is).
_URL_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))
# What browsers drop from anywhere in a URL, and strip from its start.
_DROPPED = str.maketrans("", "", "\t\n\r")
_LEADING = "".join(chr(c) for c in range(0x21))
# How many rounds of percent-decoding are looked through (``%2525...`` nests).
_DECODE_ROUNDS = 4


def _local_path(value: str) -> bool:
    """Whether ``value`` starts with exactly one slash and names no scheme or host."""
    if not value.startswith("/") or value.startswith("//"):
        return False
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc


def _as_browser_reads(value: str) -> str:
    """``value`` as a browser's URL parser sees it: tabs and newlines dropped
    anywhere, control characters and spaces stripped from the start, ``\\`` as ``/``."""
    return value.translate(_DROPPED).lstrip(_LEADING).replace("\\", "/")


def _safe_next(value: str | None) -> str:
    """A local path to go to after login; anything else (other origins) becomes "/".

    Browsers drop tabs and newlines in a URL and read ``\\`` as ``/``, so
    ``/<TAB>/evil.example`` is ``//evil.example``, another host. The value
    itself must be plain printable ASCII (what ``request.path_qs`` gives) and a
    local path; and so must it be as a browser reads it after every round of
    percent-decoding (``/%2F/evil``, ``/%5Cevil``, ``/%09/evil`` once decoded
    again on the way).
    """
    if not value or not set(value) <= _URL_CHARS or not _local_path(value):
        return "/"
    seen = value
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(seen)
        if not _local_path(_as_browser_reads(decoded)):
            return "/"
        if decoded == seen:
            return value
        seen = decoded
    return "/"  # still encoded after that many rounds: not a link this site makes


async def _require_session(request: web.Request, *roles: str) -> Session:
    """The session, or a redirect to the login page (or home, for another role).

    A role sent home from a page about one object (a call page) asked for its
    id all the same: that is audited like any refused look.
    """
    session: Session | None = request.get(SESSION)
    if session is None:
        target = request.path_qs
        raise web.HTTPSeeOther("/login?" + urlencode({"next": target}))
    if session.account.must_change_password and request.path != "/password":
        # A temporary password opens the password change and nothing else.
        raise web.HTTPSeeOther("/password")
    if roles and session.account.role not in roles:
        await audit_refused(request, ErrorCode.ROLE_FORBIDDEN)
        raise web.HTTPSeeOther("/")
    return session


async def _institution_name(request: web.Request, account: Account) -> str:
    if DIRECTORY not in request.app:
        return ""
    institution = await request.app[DIRECTORY].institution(account.institution_id)
    return institution.name if institution else ""


async def _frame(request: web.Request, *, participant: bool = False) -> Frame:
    """The consultation of the page's URL, or 404 exactly as for an unknown id.

    The service audits a refused look; the page is a frame and what it shows of
    the patient comes from the audited API.
    """
    if CONSULTATIONS not in request.app:
        raise web.HTTPNotFound()
    try:
        return await request.app[CONSULTATIONS].frame(
            actor(request), request.match_info["consultation_id"], participant=participant
        )
    except NotFound:
        raise web.HTTPNotFound() from None


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
    extra_strings: dict[str, str] | None = None,
    institution_name: str | None = None,
    **context: Any,
) -> web.Response:
    """Render ``template`` in the request's language with the common page context.

    ``institution_name`` is the account's institution's, when the handler has
    read it already (one query less).
    """
    loc = localizer(request)
    account = session.account if session else None
    institution = institution_name
    if institution is None:
        institution = await _institution_name(request, account) if account else ""
    data: dict[str, Any] = {"locale": loc.lang_tag, "page": page}
    if account is not None:
        # The institution's name too: the watermark over replays and documents.
        data["account"] = _account_data(request, account) | {"institution_name": institution}
    data.update(page_data or {})
    html = loc.env.get_template(template).render(
        page=page,
        locale=loc.locale,
        lang_tag=loc.lang_tag,
        locales=LOCALES,
        account=account,
        role_label=loc.gettext(_ROLE_LABELS.get(account.role, account.role)) if account else "",
        # The medical-affairs statistics, in the top bar of the roles that may see them.
        stats_link=account is not None and account.role in STATS_ROLES,
        institution=institution,
        csrf_token=session.csrf_token if session else "",
        strings=loc.js_strings()
        | {key: loc.gettext(msgid) for key, msgid in (extra_strings or {}).items()},
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
    session = await _require_session(request)
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
    session = await _require_session(request, "clinic_doctor")
    return await render(
        request,
        "clinic.html",
        page="clinic",
        session=session,
        extra_strings=FHIR_IMPORT_STRINGS,
        page_data={"fhir_server": bool(request.app[SETTINGS].fhir_server_url)},
    )


async def queue_page(request: web.Request) -> web.StreamResponse:
    """The specialist's queue of waiting requests and their own consultations."""
    _switch_language(request)
    session = await _require_session(request, "specialist")
    return await render(request, "queue.html", page="queue", session=session)


async def coordinator_page(request: web.Request) -> web.StreamResponse:
    """The consultation centre: roster, waiting and escalated requests, assignment."""
    _switch_language(request)
    session = await _require_session(request, "coordinator")
    return await render(request, "coordinator.html", page="coordinator", session=session)


# Consultations in these states have a call to join.
JOINABLE = ("accepted", "live")


async def call_page(request: web.Request) -> web.StreamResponse:
    """The video call of one consultation, for its participants."""
    _switch_language(request)
    session = await _require_session(request, "clinic_doctor", "specialist")
    frame = await _frame(request, participant=True)
    consultation = frame.consultation
    account = session.account
    return await render(
        request,
        "call.html",
        page="call",
        session=session,
        page_data={
            "consultation_id": consultation.id,
            "state": consultation.state,
            "home": ROLE_HOME.get(account.role, "/"),
        },
        extra_strings=CALL_STRINGS | RECORDS_STRINGS,
        department=frame.department.name,
        requesting_institution=frame.requesting_institution.name,
        joinable=consultation.state in JOINABLE,
    )


async def consultation_page(request: web.Request) -> web.StreamResponse:
    """One consultation: the request, records, timeline and the signed opinion."""
    _switch_language(request)
    session = await _require_session(request)
    consultation = (await _frame(request)).consultation
    account = session.account
    return await render(
        request,
        "consultation.html",
        page="consultation",
        session=session,
        page_data={
            "consultation_id": consultation.id,
            "home": ROLE_HOME.get(account.role, "/"),
            "participant": policy.is_participant(account, consultation),
            # The call roles may check their setup before the call (pre-call check).
            "precall": account.role in ("clinic_doctor", "specialist"),
        },
        extra_strings=CONSULTATION_STRINGS | RECORDS_STRINGS | RESULT_STRINGS,
    )


# What only the replay pages' scripts show.
REPLAY_STRINGS: dict[str, str] = {
    "replay.play": N_("Play"),
    "replay.pause": N_("Pause"),
    "replay.not_found": N_("This recorded consultation was not found, or you may not replay it."),
    "replay.no_recordings": N_("No recordings are kept for this consultation."),
    "replay.before": N_("Not in the call yet"),
    "replay.after": N_("Left the call"),
    "replay.part": N_("part %(part)s"),
    "replay.open_document": N_("Open the document shown"),
    "replay.event.requested": N_("%(name)s requested the consultation"),
    "replay.event.accepted": N_("%(name)s accepted"),
    "replay.event.assigned": N_("%(name)s assigned the consultation"),
    "replay.event.reassigned": N_("%(name)s reassigned the consultation"),
    "replay.event.escalated": N_("Escalated to the coordinators"),
    "replay.event.invited": N_("%(name)s invited another doctor"),
    "replay.event.document_shared": N_("%(name)s attached a document"),
    "replay.event.recording_failed": N_("A recording failed"),
    "replay.event.joined": N_("%(name)s joined"),
    "replay.event.rejoined": N_("%(name)s reconnected"),
    "replay.event.left": N_("%(name)s left"),
    "replay.event.live": N_("The consultation started"),
    "replay.event.ended": N_("The call ended"),
    "replay.event.signed": N_("%(name)s signed the opinion"),
    "replay.event.referred": N_("%(name)s referred the patient to an in-person visit"),
    "replay.event.document_shown": N_("%(name)s showed a document to all"),
    "replay.event.document_opened": N_("%(name)s opened a document"),
    "replay.event.recording_started": N_("Recording of %(name)s started"),
    "replay.event.recording_finished": N_("Recording of %(name)s finished"),
    "replay.event.recording_recovered": N_("Recording repaired after a server stop"),
    "replay.event.other": N_("%(kind)s"),
    "replay.list.empty": N_("No recorded consultations match."),
    "replay.list.page": N_("Page %(page)s of %(pages)s (%(total)s in all)"),
    "replay.list.open": N_("Replay"),
    "replay.exporting": N_("Preparing the watermarked copy… %(percent)s"),
    "replay.export_ready": N_("The watermarked copy is being downloaded."),
    "replay.export_failed": N_("The watermarked copy could not be made."),
}


async def recordings_page(request: web.Request) -> web.StreamResponse:
    """Recorded consultations the user may replay, with filters and paging."""
    _switch_language(request)
    session = await _require_session(request, "reviewer", "admin", "clinic_doctor", "specialist")
    return await render(
        request,
        "recordings.html",
        page="recordings",
        session=session,
        extra_strings=REPLAY_STRINGS,
    )


# The watermark the replay page comes with (see ``first_watermark``): its text's
# size in CSS pixels (replay.css); the tiles are sized without measuring the
# text: a CJK or full-width character is taken as one em wide, any other as 0.6.
FIRST_MARK_PX = 15
_WIDE_FROM = 0x2E80


def _text_em(text: str) -> float:
    return sum(1.0 if ord(ch) >= _WIDE_FROM else 0.6 for ch in text)


def first_watermark(lines: list[str]) -> dict[str, Any]:
    """The tiles of the viewer's watermark as the replay page's HTML draws it (an SVG
    pattern over each player), until its script draws the live one (watermark.js).

    The same brick of tiles as ``drawTiles`` in watermark.js: the lines, then
    below them the next row's tile shifted by half. With the mark in the HTML the
    first picture shows under it as soon as it is decoded, and the script's
    canvas (its drawing, the layout it reads) comes after that picture rather
    than before it.
    """
    size = FIRST_MARK_PX
    line_height = round(size * 1.3)
    width = round(max((_text_em(line) for line in lines), default=0) * size + size * 3)
    height = round(line_height * len(lines) + size * 2.5)
    margin = 2
    texts = []
    for x, y in ((0, 0), (width / 2, height), (-width / 2, height)):
        for i, line in enumerate(lines):
            texts.append({"x": x + margin, "y": y + margin + i * line_height + size, "text": line})
    return {"width": width, "height": 2 * height, "texts": texts}


async def replay_page(request: web.Request) -> web.StreamResponse:
    """The replay of one recorded consultation, opened with the page (audited).

    Unlike the other pages, this one carries its data: the handler opens the
    replay through the same audited service as ``GET
    /api/consultations/{id}/replay`` and renders the players with the page, so
    that each ``<video>`` starts loading while the HTML is parsed instead of
    after the scripts and a second round trip (the first frame came 5-6 times
    later than a bare ``<video>``'s). A consultation the user may not replay
    answers 404 exactly as an unknown id, the page saying so.
    """
    _switch_language(request)
    session = await _require_session(request, "reviewer", "admin", "clinic_doctor", "specialist")
    consultation_id = request.match_info["consultation_id"]
    institution_name: str | None = None
    replay: dict[str, Any] | None = None
    began = time.perf_counter()
    try:
        opened = await request.app[REPLAY].open(actor(request), consultation_id)
    except NotFound:
        pass
    else:
        replay = replay_payload(opened)
        # Read with the replay, like every name on the page: the page costs the
        # session's read and the replay's one audited transaction, no more.
        mine = opened.institutions.get(session.account.institution_id)
        institution_name = mine.name if mine else ""
    loc = localizer(request)
    replay_meta = ""
    if replay is not None:
        c = replay["consultation"]
        replay_meta = " · ".join(
            (c["department"]["name"], c["clinic"]["name"], c["hospital"]["name"])
        )
    # The viewer's mark, as watermark.js words it: who, from where, and when
    # (the server's local time; the script's mark follows the browser's clock).
    account = session.account
    now = _today(request).astimezone()
    stamp = now.strftime("%Y/%m/%d %H:%M:%S" if loc.locale == "zh_CN" else "%m/%d/%Y, %H:%M:%S")
    who = " · ".join(part for part in (account.display_name, institution_name) if part)
    watermark = first_watermark([line for line in (who, stamp) if line])
    opened_at = time.perf_counter()
    recordings = []
    kept = replay["recordings"] if replay else []
    # Where each player stands as the page opens, with the playhead on the
    # first recorded moment (as replay-page.js places it): the first recorded
    # is in the call, a later one not yet. The page comes with it, so that the
    # first picture shows as it stays (not dimmed) before that script runs.
    first_ms = min((rec["offset_ms"] for rec in kept), default=0)
    before = loc.gettext(REPLAY_STRINGS["replay.before"])
    for rec in kept:
        part = loc.gettext(REPLAY_STRINGS["replay.part"]) % {"part": rec["part"]}
        meta = [rec["participant"].get("institution") or "", part if rec["part"] > 1 else ""]
        later = rec["offset_ms"] > first_ms
        recordings.append(
            rec
            | {
                "meta": " · ".join(m for m in meta if m),
                "state": "before" if later else "inside",
                "note": before if later else "",
            }
        )
    response = await render(
        request,
        "replay.html",
        page="replay",
        session=session,
        page_data={"consultation_id": consultation_id, "replay": replay},
        extra_strings=REPLAY_STRINGS,
        institution_name=institution_name,
        replay_meta=replay_meta,
        watermark=watermark,
        recordings=recordings,
    )
    if replay is None:
        response.set_status(404)
    else:
        # Where the server's time went (Chromium shows it in the navigation's
        # timing; tests/bench/replay.py prints it): the audited open, the
        # rendering. Not on a refusal, which must not differ from an unknown id.
        response.headers["Server-Timing"] = (
            f"session;dur={request.get(SESSION_MS, 0.0):.1f}, "
            f"open;dur={(opened_at - began) * 1000:.1f}, "
            f"render;dur={(time.perf_counter() - opened_at) * 1000:.1f}"
        )
    return response
