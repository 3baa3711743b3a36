"""Security headers on successful and error responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from web.security import CONTENT_SECURITY_POLICY, security_headers_middleware

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]

EXPECTED = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def forbidden(request: web.Request) -> web.Response:
    raise web.HTTPForbidden()


def make_app(tls: bool) -> web.Application:
    app = web.Application(middlewares=[security_headers_middleware(tls)])
    app.router.add_get("/", ok)
    app.router.add_get("/forbidden", forbidden)
    return app


def test_csp_is_strict() -> None:
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/missing", 404), ("/forbidden", 403)])
async def test_headers_on_every_response(
    aiohttp_client: ClientFactory, path: str, status: int
) -> None:
    client = await aiohttp_client(make_app(tls=False))

    resp = await client.get(path)

    assert resp.status == status
    for name, value in EXPECTED.items():
        assert resp.headers.get(name) == value, name
    assert "Strict-Transport-Security" not in resp.headers


@pytest.mark.parametrize("path", ["/", "/missing"])
async def test_hsts_only_with_tls(aiohttp_client: ClientFactory, path: str) -> None:
    client = await aiohttp_client(make_app(tls=True))

    resp = await client.get(path)

    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert resp.headers["X-Frame-Options"] == "DENY"
