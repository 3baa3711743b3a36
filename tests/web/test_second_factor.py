"""The physicians' second factor (TOTP): enrolment, the login's second step, the
identity check before a call, lock-out, recovery codes and the administrator's reset.

The app runs on the manual clock, so every TOTP code is computed for the server's
own time and the window's edges are hit to the second.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from aiohttp import web

from records import sealed, sealed_values
from records.schema import audit_log, second_factors, sessions
from signaling.workflow.base import Context, NoPushes
from signaling.workflow.keys import KeyService
from signaling.workflow.second_factor import totp_context
from web.keys import DB
from web.settings import Settings, SettingsError

from ..conftest import LoginAs, ManualClock, make_settings
from ..scenario import Scenario, User, tab_of
from . import test_cli
from .calls import connect, join

WINDOW = 3600
STEP = 30


@pytest.fixture
def settings(tmp_path: Path, demo_database: str) -> Settings:
    # Only the specialists here: the clinic doctor's session stays a one-step
    # login, so the scenario can build consultations as before.
    return make_settings(
        tmp_path,
        database_url=demo_database,
        totp_roles=("specialist",),
        reverify_window_seconds=WINDOW,
        # A real key: the secret must not sit in the database in clear.
        encryption_key=base64.b64encode(bytes(range(32))).decode(),
    )


def code_at(secret: str, clock: ManualClock, steps: int = 0) -> str:
    """The code an authenticator app shows at the server's time (``steps`` later)."""
    return pyotp.TOTP(secret).at(clock.now(), counter_offset=steps)


async def audit(app: web.Application, prefix: str) -> list[dict[str, Any]]:
    async with app[DB].read() as conn:
        rows = await conn.execute(
            sa.select(audit_log.c.action, audit_log.c.object_id, audit_log.c.detail)
            .where(audit_log.c.action.like(prefix + "%"))
            .order_by(audit_log.c.seq)
        )
        return [dict(r._mapping) for r in rows]


async def enrol(login_as: LoginAs, clock: ManualClock, username: str = "cardio1") -> Any:
    """``username`` logged in and enrolled: (user, secret, recovery codes)."""
    user = await login_as(username)
    status, data = await user.post("/api/auth/enrolment")
    assert status == 200, data
    secret = data["secret"]
    status, data = await user.post("/api/auth/enrolment/confirm", {"code": code_at(secret, clock)})
    assert status == 200, data
    return user, secret, data["recovery_codes"]


async def second_login(login_as: LoginAs, username: str = "cardio1") -> User:
    user = await login_as(username)
    assert user.account["username"] == username
    return user


# -- the login's two steps -------------------------------------------------------------


async def test_a_session_owing_the_second_factor_reaches_only_its_step(
    login_as: LoginAs, server: Any
) -> None:
    cardio = await login_as("cardio1")
    resp = await cardio.client.post(
        "/api/session", json={"username": "cardio1", "password": "demo1234"}
    )
    assert (await resp.json())["second_factor"] == "enrol"
    status, data = await cardio.get("/api/queue")
    assert (status, data["error"]["code"]) == (401, "second_factor_required")
    status, data = await cardio.get("/api/session")
    assert status == 200 and data["account"]["username"] == "cardio1"
    assert data["second_factor"] == "enrol"
    # Pages lead to the second step, and back to where the user was going.
    resp = await cardio.client.get("/queue", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/login/second-factor?next=/queue"
    # No WebSocket either (no call, no pushes).
    origin = str(cardio.client.make_url("/")).rstrip("/")
    resp = await cardio.client.get("/ws", headers={"Origin": origin})
    assert resp.status == 401
    # A role outside totp_roles logs in in one step.
    clinic = await login_as("clinic1")
    status, _ = await clinic.get("/api/patients")
    assert status == 200


async def test_the_enrolment_page_shows_the_qr_code_and_the_same_key_on_reload(
    login_as: LoginAs, app: web.Application
) -> None:
    cardio = await login_as("cardio1")
    first = await (await cardio.client.get("/login/second-factor?next=/queue")).text()
    again = await (await cardio.client.get("/login/second-factor?next=/queue")).text()
    assert "<svg" in first and 'id="totp-secret"' in first
    status, data = await cardio.post("/api/auth/enrolment")
    assert status == 200
    grouped = " ".join(data["secret"][i : i + 4] for i in range(0, len(data["secret"]), 4))
    assert grouped in first and grouped in again
    assert data["otpauth_uri"].startswith("otpauth://totp/teleconsult:cardio1?secret=")
    # Sealed at rest: the database holds no trace of the key.
    async with app[DB].read() as conn:
        stored = (await conn.execute(sa.select(second_factors.c.secret))).scalar_one()
    assert stored.startswith("sealed:1:") and data["secret"] not in stored


async def test_enrolment_is_confirmed_by_a_code_and_gives_ten_recovery_codes_once(
    login_as: LoginAs, clock: ManualClock, app: web.Application
) -> None:
    cardio = await login_as("cardio1")
    _, data = await cardio.post("/api/auth/enrolment")
    secret = data["secret"]
    status, data = await cardio.post("/api/auth/enrolment/confirm", {"code": "000000"})
    assert (status, data["error"]["code"], data["error"]["fields"]) == (400, "wrong_code", ["code"])
    status, data = await cardio.post(
        "/api/auth/enrolment/confirm", {"code": code_at(secret, clock)}
    )
    assert status == 200
    codes = data["recovery_codes"]
    assert len(codes) == 10 == len(set(codes))
    assert all(len(c) == 11 and c[5] == "-" for c in codes)
    # The session is complete now.
    status, _ = await cardio.get("/api/queue")
    assert status == 200
    # Once enrolled, neither step is there again (the codes are not shown twice).
    status, data = await cardio.post(
        "/api/auth/enrolment/confirm", {"code": code_at(secret, clock)}
    )
    assert (status, data["error"]["code"]) == (409, "conflict")
    status, data = await cardio.post("/api/auth/enrolment")
    assert (status, data["error"]["code"]) == (409, "conflict")
    actions = [a["action"] for a in await audit(app, "auth.totp")]
    assert actions == ["auth.totp_enrolment_started", "auth.totp_enrolled"]


async def test_the_next_login_takes_a_code_once(login_as: LoginAs, clock: ManualClock) -> None:
    _, secret, _ = await enrol(login_as, clock)
    again = await second_login(login_as)
    status, data = await again.get("/api/queue")
    assert data["error"]["code"] == "second_factor_required"
    # The code used to enrol is spent: reading it over the shoulder gives nothing.
    status, data = await again.post("/api/auth/second-factor", {"code": code_at(secret, clock)})
    assert (status, data["error"]["code"]) == (400, "wrong_code")
    clock.advance(STEP)
    fresh = code_at(secret, clock)
    status, data = await again.post(
        "/api/auth/second-factor", {"code": f" {fresh[:3]} {fresh[3:]} "}
    )
    assert (status, data) == (200, {"method": "totp"})
    status, _ = await again.get("/api/queue")
    assert status == 200
    # Another session cannot reuse it either.
    third = await second_login(login_as)
    status, data = await third.post("/api/auth/second-factor", {"code": fresh})
    assert (status, data["error"]["code"]) == (400, "wrong_code")


async def test_one_step_of_clock_drift_either_way_is_accepted(
    login_as: LoginAs, clock: ManualClock
) -> None:
    _, secret, _ = await enrol(login_as, clock)
    clock.advance(10 * STEP)
    user = await second_login(login_as)
    for steps, ok in ((-2, False), (2, False), (-1, True), (1, True), (0, False)):
        status, data = await user.post(
            "/api/auth/second-factor", {"code": code_at(secret, clock, steps)}
        )
        # -1 then +1 are accepted; after +1, the current step is older: refused.
        assert (status == 200) is ok, (steps, data)


async def test_a_recovery_code_signs_in_once(login_as: LoginAs, clock: ManualClock) -> None:
    _, _, codes = await enrol(login_as, clock)
    user = await second_login(login_as)
    # Typed in lower case and without the dash.
    typed = codes[3].lower().replace("-", "")
    status, data = await user.post("/api/auth/second-factor", {"code": typed})
    assert (status, data) == (200, {"method": "recovery_code"})
    other = await second_login(login_as)
    status, data = await other.post("/api/auth/second-factor", {"code": codes[3]})
    assert (status, data["error"]["code"]) == (400, "wrong_code")
    status, data = await other.post("/api/auth/second-factor", {"code": codes[4]})
    assert status == 200


async def test_wrong_codes_lock_the_second_factor_for_a_while(
    login_as: LoginAs, clock: ManualClock, settings: Settings, app: web.Application
) -> None:
    _, secret, _ = await enrol(login_as, clock)
    clock.advance(STEP)
    user = await second_login(login_as)
    for _ in range(settings.login_max_failures):
        status, data = await user.post("/api/auth/second-factor", {"code": "123456"})
        assert data["error"]["code"] == "wrong_code"
    # Locked: even the right code is refused until the lock ends.
    status, data = await user.post("/api/auth/second-factor", {"code": code_at(secret, clock)})
    assert (status, data["error"]["code"]) == (429, "account_locked")
    clock.advance(settings.login_lockout_seconds + 1)
    status, data = await user.post("/api/auth/second-factor", {"code": code_at(secret, clock)})
    assert status == 200, data
    actions = [a["action"] for a in await audit(app, "auth.second_factor")]
    assert actions == [
        *["auth.second_factor_failed"] * (settings.login_max_failures - 1),
        "auth.second_factor_lock",
        "auth.second_factor_locked_out",
        "auth.second_factor",
    ]


# -- before a call ---------------------------------------------------------------------


async def accepted_by_enrolled(
    scenario: Scenario, login_as: LoginAs, clock: ManualClock
) -> tuple[Any, Any, str]:
    """An accepted consultation whose specialist enrolled (and so verified) now."""
    cardio, secret, _ = await enrol(login_as, clock)
    scenario.users["cardio1"] = cardio
    return await scenario.consultation("accepted"), cardio, secret


async def test_a_join_within_the_window_needs_no_new_code(
    scenario: Scenario, login_as: LoginAs, clock: ManualClock
) -> None:
    c, cardio, _ = await accepted_by_enrolled(scenario, login_as, clock)
    clock.advance(WINDOW)  # exactly the window: still fresh
    reply = await join(await connect(cardio), c.id, tab=tab_of("cardio1"))
    assert reply["type"] == "joined"


async def test_a_join_after_the_window_is_refused_until_the_physician_verifies(
    scenario: Scenario, login_as: LoginAs, clock: ManualClock, app: web.Application
) -> None:
    c, cardio, secret = await accepted_by_enrolled(scenario, login_as, clock)
    clinic = await connect(c.clinic)
    assert (await join(clinic, c.id, tab=tab_of("clinic1")))["type"] == "joined"
    await clinic.drain()  # its own "joined" on the timeline
    clock.advance(WINDOW + 1)
    sock = await connect(cardio)
    reply = await join(sock, c.id, tab=tab_of("cardio1"))
    assert (reply["type"], reply["code"]) == ("error", "verification_required")
    # Nobody joined: the clinic doctor sees no one come in, the call is not live.
    assert [m["type"] for m in await clinic.drain()] == []
    _, data = await c.clinic.get(c.url)
    assert data["consultation"]["state"] == "accepted"

    status, data = await cardio.post(
        "/api/auth/verify", {"consultation_id": c.id, "code": "000000"}
    )
    assert (status, data["error"]["code"]) == (400, "wrong_code")
    status, data = await cardio.post(
        "/api/auth/verify", {"consultation_id": c.id, "code": code_at(secret, clock)}
    )
    assert status == 200 and data["verified_at"].startswith(clock.now().isoformat()[:19])
    # The same socket joins now.
    reply = await join(sock, c.id, tab=tab_of("cardio1"))
    assert reply["type"] == "joined"

    _, data = await c.clinic.get(f"{c.url}/timeline")
    checks = [e for e in data["events"] if e["kind"] == "identity_verified"]
    assert [(e["actor"]["id"], e["data"]) for e in checks] == [
        (cardio.account["id"], {"method": "totp"})
    ]
    entries = await audit(app, "consultation.identity_verified")
    assert [(e["object_id"], e["detail"]["method"]) for e in entries] == [(c.id, "totp")]
    failed = await audit(app, "auth.second_factor_failed")
    assert [(e["detail"]["purpose"], e["detail"]["consultation_id"]) for e in failed] == [
        ("call", c.id)
    ]


async def test_a_tab_reconnecting_to_its_call_is_not_asked_again(
    scenario: Scenario, login_as: LoginAs, clock: ManualClock
) -> None:
    c, cardio, _ = await accepted_by_enrolled(scenario, login_as, clock)
    first = await connect(cardio)
    assert (await join(first, c.id, tab=tab_of("cardio1")))["type"] == "joined"
    clock.advance(WINDOW + 60)
    # The network drops and the same tab comes back mid-call.
    back = await connect(cardio)
    reply = await join(back, c.id, tab=tab_of("cardio1"))
    assert reply["type"] == "joined" and reply["resumed"] is True
    # Another window of the same session is a new join: asked.
    await back.close()
    await first.close()


async def test_only_participants_verify_for_a_call(
    scenario: Scenario, login_as: LoginAs, clock: ManualClock
) -> None:
    c, _, _ = await accepted_by_enrolled(scenario, login_as, clock)
    resp_user, secret, _ = await enrol(login_as, clock, "resp1")
    clock.advance(STEP)
    status, data = await resp_user.post(
        "/api/auth/verify", {"consultation_id": c.id, "code": code_at(secret, clock)}
    )
    # Not visible to another department's specialist: as for an unknown id.
    assert (status, data["error"]["code"]) == (404, "not_found")
    status, data = await resp_user.post(
        "/api/auth/verify", {"consultation_id": "0" * 32, "code": code_at(secret, clock)}
    )
    assert (status, data["error"]["code"]) == (404, "not_found")
    status, data = await resp_user.post(
        "/api/auth/verify", {"consultation_id": "not-an-id", "code": "123456"}
    )
    assert (status, data["error"]["fields"]) == (400, ["consultation_id"])


# -- the administrator's reset ---------------------------------------------------------


async def test_an_administrator_resets_a_lost_phone(
    login_as: LoginAs, clock: ManualClock, app: web.Application
) -> None:
    cardio, _, _ = await enrol(login_as, clock)
    cardio_id = cardio.account["id"]
    clinic = await login_as("clinic1")
    status, data = await clinic.post(f"/api/admin/accounts/{cardio_id}/totp-reset")
    assert (status, data["error"]["code"]) == (403, "role_forbidden")
    admin = await login_as("admin1")
    status, data = await admin.post(f"/api/admin/accounts/{'0' * 32}/totp-reset")
    assert (status, data["error"]["code"]) == (404, "not_found")
    status, data = await admin.post(f"/api/admin/accounts/{cardio_id}/totp-reset")
    assert (status, data) == (200, {"sessions_ended": 1})
    # The physician's session is over; the next login enrols again.
    status, data = await cardio.get("/api/session")
    assert (status, data["error"]["code"]) == (401, "unauthenticated")
    resp = await cardio.client.post(
        "/api/session", json={"username": "cardio1", "password": "demo1234"}
    )
    assert (await resp.json())["second_factor"] == "enrol"
    entries = await audit(app, "admin.account.reset_second_factor")
    assert [(e["object_id"], e["detail"]) for e in entries] == [
        (cardio_id, {"had_second_factor": True, "sessions_ended": 1})
    ]


# -- settings --------------------------------------------------------------------------


def test_the_product_asks_physicians_and_refuses_unknown_roles() -> None:
    assert Settings().totp_roles == ("clinic_doctor", "specialist")
    assert Settings().reverify_window_seconds == 2 * 3600
    assert Settings.from_env({"TELECONSULT_TOTP_ROLES": ""}).totp_roles == ()
    with pytest.raises(SettingsError, match="nurse"):
        Settings.from_env({"TELECONSULT_TOTP_ROLES": "specialist,nurse"})
    with pytest.raises(SettingsError):
        Settings(reverify_window_seconds=-1)


async def test_key_rotation_seals_the_secrets_anew(
    login_as: LoginAs, clock: ManualClock, app: web.Application, settings: Settings, tmp_path: Path
) -> None:
    _, secret, _ = await enrol(login_as, clock)
    old_ring = settings.keyring()
    assert old_ring is not None
    new_ring = sealed.Keyring([bytes(32), *old_ring.keys])
    ctx = Context(db=app[DB], clock=clock, notifier=NoPushes())
    keys = KeyService(ctx, keyring=new_ring, files_root=tmp_path, recordings_root=tmp_path)
    report = await keys.rotate()
    assert (report.secrets, report.failed) == (1, {})
    assert (await keys.rotate()).secrets == 0  # done: nothing left
    async with app[DB].read() as conn:
        account_id, stored = (
            await conn.execute(sa.select(second_factors.c.account_id, second_factors.c.secret))
        ).one()
    # Only the new key is needed now.
    only_new = sealed.Keyring([bytes(32)])
    assert sealed_values.open_value(stored, only_new, totp_context(account_id)) == secret.encode()
    with pytest.raises(sealed.SealError):
        sealed_values.open_value(stored, old_ring, totp_context(account_id))
    assert [e["object_id"] for e in await audit(app, "second_factor.reseal")] == [account_id]


def test_the_demo_runs_without_a_phone_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The product's default (physicians give the second factor), as `make demo` runs.
    tests_env = test_cli.env_for
    monkeypatch.setattr(
        test_cli,
        "env_for",
        lambda d: {k: v for k, v in tests_env(d).items() if k != "TELECONSULT_TOTP_ROLES"},
    )
    server = test_cli.Server(tmp_path, "--demo")
    try:
        server.wait_for_line("demo: the second factor (TOTP) is off")
        server.wait_for_line("teleconsult is running")
        server.wait_until_listening()
        status, body = test_cli.request(
            server.port, "POST", "/api/session", {"username": "cardio1", "password": "demo1234"}
        )
        assert status == 200 and isinstance(body, dict)
        assert body["second_factor"] is None
    finally:
        assert server.stop() == 0


async def test_a_session_from_before_the_second_factor_still_owes_it(
    login_as: LoginAs, app: web.Application
) -> None:
    cardio = await login_as("cardio1")

    # As a session opened before the upgrade (or before the role was in
    # totp_roles) reads: nothing pending, never verified.
    def migrated(conn: sa.Connection) -> None:
        conn.execute(sessions.update().values(second_factor_pending=False))

    await app[DB].run_write(migrated)
    status, data = await cardio.get("/api/queue")
    assert (status, data["error"]["code"]) == (401, "second_factor_required")
