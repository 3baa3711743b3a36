"""Authentication at the edge: session cookie, Origin check, CSRF.

Cookie-authenticated writes must carry the session's CSRF token in the
``X-CSRF-Token`` header and, when the browser sends an ``Origin``, come from this
site. Together with JSON-only bodies, a page on another site cannot make a
logged-in browser change anything here.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from records.vocab import ErrorCode
from signaling.workflow.auth import Session
from signaling.workflow.base import Actor
from web.errors import api_error
from web.keys import AUTH, SESSION, SETTINGS

COOKIE = "tc_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Reachable without a session: logging in, the API description, liveness.
PUBLIC_API = frozenset(
    {("POST", "/api/session"), ("GET", "/api/openapi.json"), ("GET", "/api/health")}
)


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
    return Actor(account=session.account, client_addr=client_addr(request))


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


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the session, then enforce Origin, CSRF and login on the API."""
    token = request.cookies.get(COOKIE)
    session: Session | None = None
    if token:
        session = await request.app[AUTH].authenticate(token)
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
    return await handler(request)
