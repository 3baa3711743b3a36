"""Concurrent requests through the real app: lock-out, invitations, accept.

On SQLite the single writer serializes every write; on PostgreSQL (``make
test-postgres``) these requests really overlap, and each test here failed there
before its fix (issue 15, items 6, 7 and 16).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from records.demo import DEMO_PASSWORD
from records.schema import audit_log, consultation_events, consultation_invitees, consultations
from web.keys import DB
from web.settings import Settings

from ..scenario import Scenario

Client = TestClient[Any, Any]
MAX_FAILURES = 20
# Headers that differ between any two responses, whatever they answer.
VARYING = {"Date", "Content-Length"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, login_max_failures=MAX_FAILURES)


async def login(client: Client, username: str, password: str) -> tuple[int, Any, Any]:
    resp = await client.post("/api/session", json={"username": username, "password": password})
    return resp.status, await resp.json(), resp.headers


async def actions(app: Any, prefix: str) -> Counter[str]:
    async with app[DB].read() as conn:
        rows = await conn.execute(
            sa.select(audit_log.c.action).where(audit_log.c.action.startswith(prefix))
        )
        return Counter(a for (a,) in rows)


@pytest.mark.parametrize("username", ["clinic1", "nobody-here"])
async def test_concurrent_wrong_passwords_lock_the_username_after_exactly_the_maximum(
    anon: Client, app: Any, username: str
) -> None:
    answers = await asyncio.gather(*(login(anon, username, "wrong") for _ in range(MAX_FAILURES)))
    assert sorted(status for status, _, _ in answers) == [401] * MAX_FAILURES

    # Each wrong password was counted: the 20th locked the name, real or not.
    status, data, _ = await login(anon, username, DEMO_PASSWORD)
    assert (status, data.get("error", {}).get("code")) == (429, "account_locked")
    audited = await actions(app, "auth.")
    assert audited["auth.lock"] == 1
    assert audited["auth.login_failed"] == MAX_FAILURES - 1
    assert audited["auth.locked_out"] == 1


async def test_the_lock_out_does_not_tell_which_usernames_exist(
    anon: Client, clock: Any, settings: Settings
) -> None:
    def shape(answer: tuple[int, Any, Any]) -> tuple[int, Any, dict[str, str]]:
        status, body, headers = answer
        return status, body, {k: v for k, v in headers.items() if k not in VARYING}

    for attempt in range(MAX_FAILURES + 3):
        real = shape(await login(anon, "clinic1", f"wrong-{attempt}"))
        unknown = shape(await login(anon, "nobody-here", f"wrong-{attempt}"))
        assert real == unknown
        assert real[0] == (401 if attempt < MAX_FAILURES else 429)

    # And both are let in again (to be refused again: the unknown name has no password).
    clock.advance(settings.login_lockout_seconds)
    status, _, _ = await login(anon, "clinic1", DEMO_PASSWORD)
    assert status == 200
    status, data, _ = await login(anon, "nobody-here", DEMO_PASSWORD)
    assert (status, data["error"]["code"]) == (401, "login_failed")


async def invitees(app: Any, consultation_id: str) -> int:
    async with app[DB].read() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(consultation_invitees)
            .where(consultation_invitees.c.consultation_id == consultation_id)
        )
    return int(count or 0)


async def invited(app: Any, consultation_id: str) -> tuple[int, int]:
    """The ``invited`` events and ``consultation.invite`` audit entries of a consultation."""
    async with app[DB].read() as conn:
        events = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(consultation_events)
            .where(
                consultation_events.c.consultation_id == consultation_id,
                consultation_events.c.kind == "invited",
            )
        )
        audits = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(audit_log)
            .where(
                audit_log.c.object_id == consultation_id,
                audit_log.c.action == "consultation.invite",
            )
        )
    return int(events or 0), int(audits or 0)


async def test_concurrent_invitations_stop_at_four_participants(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("accepted")
    doctors = ("county1", "clinic2", "clinic3", "resp1", "paed1")
    answers = await asyncio.gather(
        *(c.clinic.post(c.url + "/participants", {"username": d}) for d in doctors)
    )

    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 2, 403: 3}, answers
    assert {body["error"]["code"] for status, body in answers if status == 403} == {"call_full"}
    assert await invitees(app, c.id) == 2
    assert await invited(app, c.id) == (2, 2)


async def test_concurrent_invitations_of_one_doctor_add_them_once(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("accepted")
    answers = await asyncio.gather(
        *(c.clinic.post(c.url + "/participants", {"username": "county1"}) for _ in range(10))
    )

    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 1, 400: 9}, answers
    assert {body["error"]["code"] for status, body in answers if status == 400} == {
        "already_participant"
    }
    assert await invitees(app, c.id) == 1
    assert await invited(app, c.id) == (1, 1)


async def test_two_specialists_accepting_at_once_one_wins(scenario: Scenario, app: Any) -> None:
    c = await scenario.consultation("requested")
    cardio1, cardio2 = await scenario.user("cardio1"), await scenario.user("cardio2")
    for _ in range(5):
        answers = await asyncio.gather(
            cardio1.post(c.url + "/accept"), cardio2.post(c.url + "/accept")
        )
        if all(status == 200 for status, _ in answers):
            pytest.fail(f"both accepted: {answers}")
        assert sorted(status for status, _ in answers) == [200, 409], answers
        loser = next(body for status, body in answers if status == 409)
        assert loser["error"]["code"] == "illegal_transition"
        winner = (cardio1, cardio2)[[status for status, _ in answers].index(200)]
        async with app[DB].read() as conn:
            taken_by = await conn.scalar(
                sa.select(consultations.c.assigned_specialist_id).where(consultations.c.id == c.id)
            )
        assert taken_by == winner.account["id"]
        c = await scenario.consultation("requested")
