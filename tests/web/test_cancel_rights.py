"""Only the requesting clinic withdraws its request: an invited doctor cannot cancel."""

from __future__ import annotations

from ..scenario import Scenario


async def test_an_invited_doctor_of_another_institution_cannot_cancel(scenario: Scenario) -> None:
    c = await scenario.consultation("accepted")
    clinic = await scenario.user("clinic1")
    status, data = await clinic.post(f"{c.url}/participants", {"username": "county1"})
    assert status == 201, data

    county = await scenario.user("county1")
    status, data = await county.post(f"{c.url}/cancel", {"reason": "不需要了"})
    assert (status, data["error"]["code"]) == (403, "forbidden"), data
    status, data = await clinic.get(c.url)
    assert data["consultation"]["state"] == "accepted"
    status, data = await clinic.get(f"{c.url}/timeline")
    assert "cancelled" not in [e["kind"] for e in data["events"]]

    # The requesting clinic still can.
    status, data = await clinic.post(f"{c.url}/cancel", {"reason": "患者已自行转院"})
    assert (status, data["consultation"]["state"]) == (200, "cancelled"), data
