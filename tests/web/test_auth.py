"""Logging in and out, lock-out, session expiry, CSRF and Origin, through the real API."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from records.demo import DEMO_PASSWORD
from records.schema import accounts, audit_log, patients
from web.auth import COOKIE, CSRF_HEADER
from web.keys import DB
from web.settings import Settings

Client = TestClient[Any, Any]
LoginAs = Any

NEW_PATIENT = {
    "name": "测试患者",
    "sex": "female",
    "birth_date": "1980-01-01",
    "national_id": "110105198001010024",
}


async def post_login(client: Client, username: str, password: str) -> tuple[int, Any, Any]:
    resp = await client.post("/api/session", json={"username": username, "password": password})
    return resp.status, await resp.json(), resp


async def audit_actions(app: Any) -> list[str]:
    async with app[DB].read() as conn:
        rows = await conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.seq))
        return [a for (a,) in rows]


async def patient_count(app: Any) -> int:
    async with app[DB].read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(patients))).scalar())


async def test_login_sets_an_httponly_samesite_cookie_without_secure_over_http(
    anon: Client,
) -> None:
    status, data, resp = await post_login(anon, "clinic1", DEMO_PASSWORD)

    assert status == 200
    assert data["account"]["username"] == "clinic1"
    assert data["csrf_token"]
    cookies = [h for h in resp.headers.getall("Set-Cookie") if h.startswith(COOKIE + "=")]
    assert len(cookies) == 1
    attrs = [a.strip().lower() for a in cookies[0].split(";")]
    assert "httponly" in attrs
    assert "samesite=lax" in attrs
    assert "secure" not in attrs
    assert "path=/" in attrs
    # The session token is only in the cookie, never in the body.
    assert resp.cookies[COOKIE].value not in await resp.text()


async def test_wrong_password_and_unknown_user_get_the_same_answer(anon: Client) -> None:
    wrong_status, wrong, _ = await post_login(anon, "clinic1", "not-the-password")
    unknown_status, unknown, _ = await post_login(anon, "nobody-here", "not-the-password")

    assert wrong_status == unknown_status == 401
    assert wrong["error"]["code"] == "login_failed"
    assert wrong == unknown
    assert COOKIE not in {c.key for c in anon.session.cookie_jar}


async def test_lockout_after_max_failures_then_unlocks_after_the_lockout_time(
    anon: Client, settings: Settings, clock: Any
) -> None:
    for _ in range(settings.login_max_failures):
        status, data, _ = await post_login(anon, "clinic1", "wrong")
        assert (status, data["error"]["code"]) == (401, "login_failed")

    status, data, resp = await post_login(anon, "clinic1", DEMO_PASSWORD)
    assert status == 429, data
    assert data["error"]["code"] == "account_locked"
    assert COOKIE not in resp.cookies

    clock.advance(settings.login_lockout_seconds - 1)
    status, data, _ = await post_login(anon, "clinic1", DEMO_PASSWORD)
    assert (status, data["error"]["code"]) == (429, "account_locked")

    clock.advance(1)
    status, data, _ = await post_login(anon, "clinic1", DEMO_PASSWORD)
    assert status == 200, data
    resp = await anon.get("/api/session")
    assert resp.status == 200


async def test_successful_login_is_audited(anon: Client, app: Any) -> None:
    before = await audit_actions(app)
    status, _, _ = await post_login(anon, "clinic1", DEMO_PASSWORD)
    assert status == 200
    assert (await audit_actions(app))[len(before) :] == ["auth.login"]


async def test_failed_logins_and_the_lock_are_audited(
    anon: Client, app: Any, settings: Settings
) -> None:
    before = len(await audit_actions(app))
    await post_login(anon, "nobody-here", "x")
    for _ in range(settings.login_max_failures):
        await post_login(anon, "clinic1", "wrong")
    await post_login(anon, "clinic1", DEMO_PASSWORD)

    assert (await audit_actions(app))[before:] == [
        "auth.login_failed",
        *["auth.login_failed"] * (settings.login_max_failures - 1),
        "auth.lock",
        "auth.locked_out",
    ]


async def test_logout_revokes_the_session_on_the_server(
    anon: Client, server: TestServer, app: Any
) -> None:
    status, data, resp = await post_login(anon, "clinic1", DEMO_PASSWORD)
    assert status == 200
    token = resp.cookies[COOKIE].value

    resp = await anon.delete("/api/session", headers={CSRF_HEADER: data["csrf_token"]})
    assert resp.status == 204

    # A client that kept a copy of the cookie cannot use it any more.
    other: Client = TestClient(server)
    await other.start_server()
    try:
        resp = await other.get("/api/session", cookies={COOKIE: token})
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthenticated"
    finally:
        await other.close()
    assert "auth.logout" in await audit_actions(app)


async def test_logout_needs_the_csrf_token(login_as: LoginAs) -> None:
    user = await login_as("clinic1")

    resp = await user.client.delete("/api/session")

    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "csrf_failed"
    status, _ = await user.get("/api/session")
    assert status == 200


async def test_post_without_or_with_wrong_csrf_token_is_refused_and_stores_nothing(
    login_as: LoginAs, app: Any
) -> None:
    user = await login_as("clinic1")
    before = await patient_count(app)

    for headers in ({}, {CSRF_HEADER: "x" * 43}, {CSRF_HEADER: ""}):
        resp = await user.client.post("/api/patients", json=NEW_PATIENT, headers=headers)
        assert resp.status == 403, headers
        assert (await resp.json())["error"]["code"] == "csrf_failed"

    assert await patient_count(app) == before
    # Another user's CSRF token does not work either.
    other = await login_as("clinic1")
    resp = await user.client.post(
        "/api/patients", json=NEW_PATIENT, headers={CSRF_HEADER: other.csrf}
    )
    assert resp.status == 403
    assert await patient_count(app) == before
    # With the right token the same request goes through.
    status, data = await user.post("/api/patients", NEW_PATIENT)
    assert status == 201, data
    assert await patient_count(app) == before + 1


async def test_cross_origin_post_is_refused(login_as: LoginAs, anon: Client, app: Any) -> None:
    user = await login_as("clinic1")
    before = await patient_count(app)

    resp = await user.client.post(
        "/api/patients",
        json=NEW_PATIENT,
        headers={CSRF_HEADER: user.csrf, "Origin": "https://evil.example"},
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "bad_origin"
    assert await patient_count(app) == before

    # Logging in from another site is refused too (no login CSRF).
    resp = await anon.post(
        "/api/session",
        json={"username": "clinic1", "password": DEMO_PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "bad_origin"
    assert COOKIE not in resp.cookies

    # The site's own origin is accepted.
    origin = str(user.client.make_url("/")).rstrip("/")
    resp = await user.client.post(
        "/api/patients", json=NEW_PATIENT, headers={CSRF_HEADER: user.csrf, "Origin": origin}
    )
    assert resp.status == 201


async def test_api_without_a_session_is_401(anon: Client) -> None:
    for method, path in (
        ("GET", "/api/session"),
        ("GET", "/api/patients"),
        ("GET", "/api/consultations"),
        ("POST", "/api/patients"),
        ("DELETE", "/api/session"),
    ):
        resp = await anon.request(method, path, json={})
        assert resp.status == 401, (method, path)
        assert (await resp.json())["error"]["code"] == "unauthenticated"
    # A made-up cookie is no session either.
    resp = await anon.get("/api/patients", cookies={COOKIE: "forged"})
    assert resp.status == 401
    # The public endpoints answer without one.
    assert (await anon.get("/api/health")).status == 200
    assert (await anon.get("/api/openapi.json")).status == 200


async def test_session_expires_after_its_ttl(
    login_as: LoginAs, clock: Any, settings: Settings
) -> None:
    user = await login_as("clinic1")
    clock.advance(settings.session_ttl_seconds - 1)
    status, _ = await user.get("/api/patients")
    assert status == 200

    clock.advance(1)
    status, data = await user.get("/api/patients")
    assert status == 401
    assert data["error"]["code"] == "unauthenticated"


async def test_password_hashes_never_leave_the_server(login_as: LoginAs, app: Any) -> None:
    async with app[DB].read() as conn:
        hashes = {h for (h,) in await conn.execute(sa.select(accounts.c.password_hash))}
    assert hashes
    clinic, coord = await login_as("clinic1"), await login_as("coord1")
    texts: list[str] = []
    for user, path in (
        (clinic, "/api/session"),
        (clinic, "/api/departments"),
        (clinic, "/api/patients"),
        (coord, "/api/session"),
        (coord, "/api/roster"),
    ):
        resp = await user.client.get(path)
        assert resp.status == 200, path
        texts.append(await resp.text())
    _, departments = await clinic.get("/api/departments")
    for d in departments["departments"]:
        resp = await coord.client.get(f"/api/departments/{d['id']}/specialists")
        assert resp.status == 200
        texts.append(await resp.text())
    resp = await clinic.client.post(
        "/api/session", json={"username": "cardio1", "password": DEMO_PASSWORD}
    )
    texts.append(await resp.text())

    for text in texts:
        assert "argon2" not in text
        assert "password" not in text
        for h in hashes:
            assert h not in text
