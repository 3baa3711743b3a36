"""Rules of remote medical practice, enforced through the real API."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from records.schema import audit_log, consultations
from web.keys import DB

from ..scenario import Scenario


async def test_specialist_with_under_three_years_cannot_accept(scenario: Scenario) -> None:
    clinic, junior = await scenario.user("clinic1"), await scenario.user("cardio_junior")
    assert junior.account["practice_years"] == 1
    assert junior.account["eligible"] is False
    c = (await scenario.consultation()).json
    # The junior sees the department queue but cannot take from it.
    _, data = await junior.get("/api/queue")
    assert [q["id"] for q in data["consultations"]] == [c["id"]]
    status, data = await junior.post(f"/api/consultations/{c['id']}/accept")
    assert (status, data["error"]["code"]) == (403, "practice_too_short")
    _, data = await clinic.get(f"/api/consultations/{c['id']}")
    assert data["consultation"]["state"] == "requested"


async def test_coordinator_cannot_assign_an_under_three_years_specialist(
    scenario: Scenario,
) -> None:
    coord, ids = await scenario.user("coord1"), await scenario.ids()
    c = (await scenario.consultation()).json
    _, data = await coord.get(f"/api/departments/{ids['cardiology']}/specialists")
    by_name = {s["display_name"]: s for s in data["specialists"]}
    assert by_name["孙浩"]["eligible"] is False and by_name["张伟"]["eligible"] is True
    assert by_name["张伟"]["on_duty"] is True  # the demo roster
    status, data = await coord.post(
        f"/api/consultations/{c['id']}/assign", {"specialist_id": by_name["孙浩"]["id"]}
    )
    assert (status, data["error"]["code"], data["error"]["fields"]) == (
        403,
        "practice_too_short",
        ["specialist_id"],
    )
    status, data = await coord.post(
        f"/api/consultations/{c['id']}/assign", {"specialist_id": by_name["刘芳"]["id"]}
    )
    assert status == 200
    assert data["consultation"]["assigned_specialist"]["display_name"] == "刘芳"


async def test_no_session_goes_live_without_the_patients_consent(scenario: Scenario) -> None:
    # 陈阿姨 has no consent on record in the demo data.
    c = await scenario.consultation("accepted", patient="陈阿姨")
    clinic, cardio, url, pid = c.clinic, c.specialist, c.url, c.patient_id
    status, data = await clinic.post(url + "/start")
    assert (status, data["error"]["code"]) == (409, "consent_required")
    _, data = await clinic.get(url)
    assert data["consultation"]["state"] == "accepted"

    status, data = await clinic.post(
        f"/api/patients/{pid}/consents",
        {
            "scope_consultation": True,
            "scope_recording": False,
            "given_by": "陈阿姨",
            "relationship": "self",
        },
    )
    assert status == 201
    consent_id = data["consent"]["id"]
    # Withdrawn consent counts as none.
    status, _ = await clinic.post(f"/api/patients/{pid}/consents/{consent_id}/withdraw")
    assert status == 200
    status, data = await cardio.post(url + "/start")
    assert (status, data["error"]["code"]) == (409, "consent_required")

    status, _ = await clinic.post(
        f"/api/patients/{pid}/consents",
        {
            "scope_consultation": True,
            "scope_recording": True,
            "given_by": "陈小红",
            "relationship": "child",
        },
    )
    assert status == 201
    status, data = await cardio.post(url + "/start")
    assert (status, data["consultation"]["state"]) == (200, "live")


async def test_recording_consent_requires_consultation_consent(scenario: Scenario) -> None:
    clinic, pid = await scenario.user("clinic1"), await scenario.patient("小明")
    status, data = await clinic.post(
        f"/api/patients/{pid}/consents",
        {
            "scope_consultation": False,
            "scope_recording": True,
            "given_by": "小明妈妈",
            "relationship": "guardian",
        },
    )
    assert (status, data["error"]["fields"]) == (400, ["scope_consultation"])
    _, data = await clinic.get(f"/api/patients/{pid}")
    assert data["consents"] == []


async def test_other_institutions_get_a_404_that_reveals_nothing(
    scenario: Scenario, app: Any
) -> None:
    made = await scenario.consultation()
    clinic1, cardio, c, url, pid = (
        made.clinic,
        made.specialist,
        made.json,
        made.url,
        made.patient_id,
    )
    missing = "0" * 32
    for outsider in ("clinic2", "county1", "resp1", "admin1"):
        user = await scenario.user(outsider)
        real = await user.get(url)
        fake = await user.get(f"/api/consultations/{missing}")
        assert real[0] == fake[0] == 404, (outsider, real)
        assert real[1] == fake[1], outsider  # the same answer as for an id that never existed
        assert (await user.post(url + "/accept"))[0] in (403, 404)
        _, listed = await user.get("/api/consultations")
        assert c["id"] not in [x["id"] for x in listed.get("consultations", [])]
    # Patients of another clinic are just as invisible.
    clinic2 = await scenario.user("clinic2")
    real = await clinic2.get(f"/api/patients/{pid}")
    fake = await clinic2.get(f"/api/patients/{missing}")
    assert real[0] == fake[0] == 404 and real[1] == fake[1]
    _, data = await clinic2.get("/api/patients")
    assert data["patients"] == []
    # A specialist of another department sees nothing either; the owner and the
    # department's specialist do.
    assert (await cardio.get(url))[0] == 200
    assert (await clinic1.get(url))[0] == 200
    # Every probe is on the audit log, with who tried.
    async with app[DB].read() as conn:
        rows = (
            await conn.execute(
                sa.select(audit_log.c.actor_id, audit_log.c.object_id).where(
                    audit_log.c.action.in_(["consultation.denied", "patient.denied"])
                )
            )
        ).all()
    assert {r.object_id for r in rows} >= {c["id"], missing, pid}
    assert all(r.actor_id for r in rows)


async def test_unanswered_request_is_escalated_after_the_configured_time(
    scenario: Scenario, clock: Any, matching: Any, settings: Any, app: Any
) -> None:
    clinic, coord = await scenario.user("clinic1"), await scenario.user("coord1")
    ids = await scenario.ids()
    urgent = (await scenario.consultation(urgency="urgent")).json
    routine = (await scenario.consultation(urgency="routine")).json

    clock.advance(settings.escalate_after_urgent_seconds - 1)
    assert await matching.escalate_overdue() == []
    clock.advance(2)
    escalated = await matching.escalate_overdue()
    assert [c.id for c in escalated] == [urgent["id"]]
    assert await matching.escalate_overdue() == []  # once only

    _, data = await coord.get("/api/queue")
    queue = {q["id"]: q for q in data["consultations"]}
    assert queue[urgent["id"]]["state"] == "escalated" and queue[urgent["id"]]["escalated"]
    assert queue[routine["id"]]["state"] == "requested"
    # Urgent before routine in the queue.
    assert list(queue) == [urgent["id"], routine["id"]]
    _, data = await clinic.get(f"/api/consultations/{urgent['id']}")
    events = data["consultation"]["events"]
    assert events[-1]["kind"] == "escalated" and events[-1]["actor"] is None
    assert events[-1]["data"]["waited_seconds"] == settings.escalate_after_urgent_seconds + 1

    # A coordinator resolves it by assigning an eligible specialist.
    _, data = await coord.get(f"/api/departments/{ids['cardiology']}/specialists")
    cardio2 = next(s["id"] for s in data["specialists"] if s["display_name"] == "刘芳")
    status, data = await coord.post(
        f"/api/consultations/{urgent['id']}/assign", {"specialist_id": cardio2}
    )
    assert (status, data["consultation"]["state"]) == (200, "accepted")
    assert data["consultation"]["escalated"] is True  # the mark stays for the record
    async with app[DB].read() as conn:
        state = (
            await conn.execute(
                sa.select(consultations.c.state).where(consultations.c.id == routine["id"])
            )
        ).scalar()
    assert state == "requested"


async def test_queue_orders_by_urgency_then_age(scenario: Scenario, clock: Any) -> None:
    cardio = await scenario.user("cardio1")
    made = []
    for urgency in ("routine", "emergency", "routine", "urgent", "emergency"):
        made.append((urgency, (await scenario.consultation(urgency=urgency)).id))
        clock.advance(30)
    _, data = await cardio.get("/api/queue")
    order = [q["id"] for q in data["consultations"]]
    rank = {"emergency": 0, "urgent": 1, "routine": 2}
    expected = [cid for _, cid in sorted(made, key=lambda m: rank[m[0]])]  # stable: by age
    assert order == expected
