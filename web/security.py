"""Security headers on every HTTP response.

The browser pages are plain ES modules served by us, with no inline script or style
and no third-party origin, so the Content-Security-Policy can be strict: everything
from ``'self'``; ``blob:`` only for media (local camera preview, replay) and images.
Camera and microphone are allowed for our own origin only, geolocation for nobody.

Install the middleware first in ``Application(middlewares=[...])`` so it is the
outermost one and also sees the responses that inner middlewares (auth, the JSON
error mapper) produce. A handler that needs a different value for one header sets it
itself; the middleware only fills in what is missing. Responses the handler has
already prepared (a WebSocket, a stream) have sent their headers and are left as is.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # URLs carry consultation ids; never leak them to another origin.
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# HSTS only over TLS: sent over plain HTTP it is ignored by browsers anyway, and on a
# demo served by IP without TLS it must not pin anything.
HSTS = "max-age=31536000"


def security_headers_middleware(tls: bool) -> Middleware:
    """Build a middleware that adds the security headers to every response.

    Args:
        tls: Whether the server is reached over HTTPS; only then is
            ``Strict-Transport-Security`` sent.

    Returns:
        An aiohttp middleware, also covering ``HTTPException`` responses raised by
        handlers (404, 403, redirects...).
    """
    headers = dict(SECURITY_HEADERS)
    if tls:
        headers["Strict-Transport-Security"] = HSTS

    def apply(response: web.StreamResponse) -> None:
        if response.prepared:
            return
        for name, value in headers.items():
            response.headers.setdefault(name, value)

    @web.middleware
    async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            apply(exc)
            raise
        apply(response)
        return response

    return security_headers
