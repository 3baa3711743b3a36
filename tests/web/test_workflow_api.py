"""The consultation lifecycle through the real API on a real SQLite file."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from records.schema import audit_log
from web.keys import DB

from ..scenario import OPINION, Scenario

READS = ("consultation.read", "consultation.list", "consultation.queue", "patient.list")


async def audited_changes(app: Any) -> list[str]:
    """Audit actions on consultations other than reads."""
    async with app[DB].read() as conn:
        rows = await conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.seq))
        return [a for (a,) in rows if a.startswith("consultation.") and a not in READS]


async def test_lifecycle_from_request_to_signed_opinion(scenario: Scenario) -> None:
    made = await scenario.consultation()
    clinic, cardio, c = made.clinic, made.specialist, made.json
    assert c["state"] == "requested"
    assert c["department"]["name"] == "心血管内科"
    assert c["patient"] == {"sex": "male", "age": 75}

    status, data = await cardio.get("/api/queue")
    assert [q["id"] for q in data["consultations"]] == [c["id"]]

    url = f"/api/consultations/{c['id']}"
    status, data = await cardio.post(url + "/accept")
    assert (status, data["consultation"]["state"]) == (200, "accepted")
    assert data["consultation"]["assigned_specialist"]["display_name"] == "张伟"
    status, data = await cardio.get("/api/queue")
    assert data["consultations"] == []

    status, data = await clinic.post(url + "/start")
    assert (status, data["consultation"]["state"]) == (200, "live")
    status, data = await cardio.post(url + "/end")
    assert (status, data["consultation"]["state"]) == (200, "ended")
    opinion = OPINION
    status, data = await cardio.post(url + "/opinion", opinion)
    assert status == 201, data
    assert data["opinion"]["body"]["impression"] == "不稳定型心绞痛可能"
    assert len(data["opinion"]["sha256"]) == 64

    status, data = await clinic.get(url)
    assert status == 200
    detail = data["consultation"]
    assert detail["state"] == "signed"
    assert [e["kind"] for e in detail["events"]] == [
        "requested",
        "accepted",
        "live",
        "ended",
        "signed",
    ]
    assert detail["opinions"][0]["body"] == {**opinion, "notes": None}
    assert detail["patient"]["name"] == "刘大爷"
    assert "national_id" not in detail["patient"]
    assert detail["patient"]["national_id_masked"].count("*") == 12

    # A signed opinion cannot be signed again or replaced.
    status, data = await cardio.post(url + "/opinion", opinion)
    assert (status, data["error"]["code"]) == (409, "illegal_transition")


async def test_referral_ends_the_consultation_instead_of_an_opinion(scenario: Scenario) -> None:
    c = await scenario.consultation("ended")
    clinic, cardio, url = c.clinic, c.specialist, c.url
    status, data = await cardio.post(url + "/referral", {"reason": "需门诊行运动平板试验"})
    assert status == 201
    assert data["opinion"]["kind"] == "referral"
    status, data = await clinic.get(url)
    assert data["consultation"]["state"] == "referred"


# Each action, the demo user allowed to try it, and its body.
ACTIONS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "accept": ("cardio1", None),
    "decline": ("cardio1", {"reason": "不属本科范围"}),
    "assign": ("coord1", None),  # body filled in with cardio2's id
    "cancel": ("clinic1", {"reason": "患者已自行转院"}),
    "start": ("clinic1", None),
    "end": ("clinic1", None),
    "opinion": ("cardio1", {"findings": "f", "impression": "i", "recommendations": "r"}),
    "referral": ("cardio1", {"reason": "需面诊"}),
}
ALLOWED = {
    "requested": {"accept", "decline", "assign", "cancel"},
    "escalated": {"accept", "decline", "assign", "cancel"},
    "accepted": {"assign", "cancel", "start"},
    "live": {"end"},
    "ended": {"opinion", "referral"},
    "signed": set(),
    "referred": set(),
    "cancelled": set(),
    "declined": set(),
}


@pytest.mark.parametrize("state", list(ALLOWED))
async def test_every_illegal_transition_is_refused_with_409(
    state: str, scenario: Scenario, app: Any
) -> None:
    users = {name: await scenario.user(name) for name in ("clinic1", "cardio1", "coord1")}
    ids = await scenario.ids()
    specialists = (await users["coord1"].get(f"/api/departments/{ids['cardiology']}/specialists"))[
        1
    ]
    cardio2 = next(s["id"] for s in specialists["specialists"] if s["display_name"] == "刘芳")
    url = (await scenario.consultation(state)).url
    status, data = await users["clinic1"].get(url)
    assert data["consultation"]["state"] == state

    changes_before = await audited_changes(app)
    for action in sorted(set(ACTIONS) - ALLOWED[state]):
        who, payload = ACTIONS[action]
        if action == "assign":
            payload = {"specialist_id": cardio2}
        status, data = await users[who].post(f"{url}/{action}", payload)
        assert status == 409, (state, action, data)
        assert data["error"]["code"] == "illegal_transition"
        assert state in data["error"]["message"]
    status, data = await users["clinic1"].get(url)
    assert data["consultation"]["state"] == state  # nothing moved
    # Refused steps leave no trace of a change in the audit log.
    assert await audited_changes(app) == changes_before


async def test_two_specialists_accepting_at_once_exactly_one_wins(scenario: Scenario) -> None:
    clinic = await scenario.user("clinic1")
    a, b = await scenario.user("cardio1"), await scenario.user("cardio2")
    for _ in range(5):
        c = (await scenario.consultation()).json
        url = f"/api/consultations/{c['id']}/accept"
        results = await asyncio.gather(a.post(url), b.post(url))
        statuses = sorted(status for status, _ in results)
        assert statuses == [200, 409], results
        winner = next(d for s, d in results if s == 200)["consultation"]["assigned_specialist"]
        loser = next(d for s, d in results if s == 409)
        assert loser["error"]["code"] == "illegal_transition"
        _status, data = await clinic.get(f"/api/consultations/{c['id']}")
        detail = data["consultation"]
        assert detail["assigned_specialist"]["id"] == winner["id"]
        assert [e["kind"] for e in detail["events"]].count("accepted") == 1
