"""Authentication at the edge: session cookie, Origin check, CSRF.

Cookie-authenticated writes must carry the session's CSRF token in the
``X-CSRF-Token`` header and, when the browser sends an ``Origin``, come from this
site. Together with JSON-only bodies, a page on another site cannot make a
logged-in browser change anything here.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from records.vocab import ErrorCode
from signaling.errors import Forbidden, NotFound
from signaling.workflow.auth import Session
from signaling.workflow.base import Actor
from web.errors import api_error
from web.keys import AUTH, DIRECTORY, SESSION, SESSION_MS, SETTINGS

COOKIE = "tc_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Reachable without a session: logging in, the API description, liveness.
PUBLIC_API = frozenset(
    {("POST", "/api/session"), ("GET", "/api/openapi.json"), ("GET", "/api/health")}
)
# Reachable by a session that still owes the second factor (the password was
# right): the second-factor step itself, who am I, logging out; and the pages
# that take it. Everything else answers ``second_factor_required``.
SECOND_FACTOR_API = PUBLIC_API | {
    ("GET", "/api/session"),
    ("DELETE", "/api/session"),
    ("POST", "/api/auth/enrolment"),
    ("POST", "/api/auth/enrolment/confirm"),
    ("POST", "/api/auth/second-factor"),
}
SECOND_FACTOR_PAGE = "/login/second-factor"
SECOND_FACTOR_PAGES = ("/login", SECOND_FACTOR_PAGE)


def same_origin(request: web.Request) -> bool:
    """True when the request's ``Origin`` (if any) is this site or an allowed origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin in request.app[SETTINGS].allowed_origins:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == request.host


def client_addr(request: web.Request) -> str | None:
    """The peer's address, for the audit log (no proxy headers are trusted)."""
    return request.remote


def actor(request: web.Request) -> Actor:
    """The logged-in user behind this request, or a 401."""
    session = request.get(SESSION)
    if session is None:
        raise api_error(ErrorCode.UNAUTHENTICATED, "log in first")
    return Actor(
        account=session.account, client_addr=client_addr(request), session=session.token_hash
    )


# Open to a session whose account must choose a new password first (after an
# administrator's reset or on a new account): who am I, log out, change it.
PASSWORD_CHANGE_API = frozenset(
    {("GET", "/api/session"), ("DELETE", "/api/session"), ("POST", "/api/session/password")}
)


# What a path parameter names, for the audit entry of a refused request.
_PARAM_KINDS = {"entry_id": "roster"}


def probed(request: web.Request) -> tuple[str, str] | None:
    """The object a request names by id in its path (the first one), if any."""
    for name, value in request.match_info.items():
        if name.endswith("_id"):
            return _PARAM_KINDS.get(name, name.removesuffix("_id")), value
    return None


async def audit_refused(request: web.Request, reason: ErrorCode) -> None:
    """Audit a request refused before any look at the object its path names.

    A role check comes before the look-up, so it answers the same for an id of
    another institution and one that never existed; the attempt is audited all
    the same, like a refused look (``Service.audit_refusal``).
    """
    target = probed(request)
    session: Session | None = request.get(SESSION)
    if target is None or session is None or DIRECTORY not in request.app:
        return
    await request.app[DIRECTORY].audit_refusal(actor(request), *target, refused=reason.value)


async def _audited(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run ``handler``; a refusal that no service audited is audited here.

    A ``NotFound`` that carries a probe was audited by the service that raised
    it; one without (a look-up outside the probe mechanism) and a refused role
    are audited against the id in the path.
    """
    try:
        return await handler(request)
    except Forbidden as exc:
        if exc.code == ErrorCode.ROLE_FORBIDDEN:
            await audit_refused(request, exc.code)
        raise
    except NotFound as exc:
        if exc.probe is None and exc.code == ErrorCode.NOT_FOUND:
            await audit_refused(request, exc.code)
        raise


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    """Hand the session token to the browser: HttpOnly, SameSite, Secure over HTTPS."""
    settings = request.app[SETTINGS]
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.session_ttl_seconds,
        httponly=True,
        secure=settings.tls,
        samesite="Lax",
        path="/",
    )


def _second_factor_gate(request: web.Request) -> None:
    """Keep a session that owes the second factor on the second-factor step."""
    path = request.path
    if path.startswith("/api/") or path == "/ws":
        if (request.method, path) not in SECOND_FACTOR_API:
            raise api_error(
                ErrorCode.SECOND_FACTOR_REQUIRED, "enter the code of your authenticator app first"
            )
    elif path not in SECOND_FACTOR_PAGES and not path.startswith("/static/"):
        raise web.HTTPSeeOther(SECOND_FACTOR_PAGE + "?" + urlencode({"next": request.path_qs}))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the session, then enforce Origin, CSRF and login on the API."""
    if request.method in ("GET", "HEAD") and request.path.startswith("/static/"):
        # Static files are the same for everyone: no session lookup (a database
        # read per script and stylesheet, which a page's first media request
        # queued behind).
        return await handler(request)
    token = request.cookies.get(COOKIE)
    session: Session | None = None
    if token:
        began = time.perf_counter()
        session = await request.app[AUTH].authenticate(token)
        request[SESSION_MS] = (time.perf_counter() - began) * 1000
        if session is not None:
            request[SESSION] = session
    if request.method in UNSAFE:
        if not same_origin(request):
            raise api_error(ErrorCode.BAD_ORIGIN, "cross-origin requests are not accepted")
        if session is not None and (request.method, request.path) != ("POST", "/api/session"):
            sent = request.headers.get(CSRF_HEADER, "")
            if not secrets.compare_digest(sent.encode(), session.csrf_token.encode()):
                raise api_error(ErrorCode.CSRF_FAILED, "missing or wrong CSRF token")
    if (
        request.path.startswith("/api/")
        and session is None
        and (request.method, request.path) not in PUBLIC_API
    ):
        raise api_error(ErrorCode.UNAUTHENTICATED, "log in first")
    if session is not None and session.second_factor_pending:
        # One step at a time: the second factor first (its own endpoints pass),
        # then, if the password is a temporary one, choosing a new one.
        _second_factor_gate(request)
    elif (
        session is not None
        and session.account.must_change_password
        and request.path.startswith(("/api/", "/ws"))
        and (request.method, request.path) not in PASSWORD_CHANGE_API | PUBLIC_API
    ):
        # The temporary password is good for choosing a new one and nothing else.
        raise api_error(ErrorCode.PASSWORD_CHANGE_REQUIRED, "choose a new password first")
    return await _audited(request, handler)
