"""Deadlines from practice (``signaling/workflow/deadlines.py``), through the real app.

A request must be accepted within 48 h and completed within 3 working days
(mainland China's calendar), an emergency or urgent one within 12 h; each list
and the consultation itself carry the clock (``deadline_kind``, ``deadline_at``,
``deadline_seconds_left``, ``overdue``), computed with the injected clock. The
periodic check escalates a request past its acceptance deadline and flags a
consultation past its completion deadline (timeline, audit, a push to the
coordinators). Every case runs on the manual clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from records.schema import audit_log
from web.keys import DB
from web.settings import Settings, SettingsError

from ..conftest import make_settings
from ..scenario import Scenario
from .calls import connect

CST = timedelta(hours=8)
DAY = 86400


def beijing(*args: int) -> datetime:
    """A Beijing wall-clock time as the UTC instant the clock holds."""
    return datetime(*args, tzinfo=UTC) - CST  # type: ignore[misc]


@pytest.fixture
def settings(tmp_path: Path, demo_database: str) -> Settings:
    # Sessions outlive the days these tests move the clock by.
    return make_settings(tmp_path, database_url=demo_database, session_ttl_seconds=60 * DAY)


async def _item(user: Any, path: str, cid: str) -> dict[str, Any]:
    status, data = await user.get(path)
    assert status == 200, data
    if "consultation" in data:
        return dict(data["consultation"])
    found = [c for c in data["consultations"] if c["id"] == cid]
    assert found, (path, cid)
    return dict(found[0])


async def _audit(app: Any, action: str) -> list[str]:
    async with app[DB].read() as conn:
        rows = await conn.execute(
            sa.select(audit_log.c.object_id).where(audit_log.c.action == action)
        )
        return [r.object_id for r in rows]


async def test_every_list_and_the_consultation_carry_the_clock(
    scenario: Scenario, clock: Any, matching: Any
) -> None:
    start = clock.now()
    c = await scenario.consultation()
    due = (start + timedelta(hours=48)).isoformat()
    clinic, cardio, coord = [await scenario.user(u) for u in ("clinic1", "cardio1", "coord1")]
    where = [
        (clinic, "/api/consultations"),
        (clinic, c.url),
        (cardio, "/api/queue"),
        (cardio, "/api/consultations"),
        (coord, "/api/queue"),
        (coord, "/api/consultations"),
    ]
    for user, path in where:
        item = await _item(user, path, c.id)
        assert item["deadline_kind"] == "accept", path
        assert item["deadline_at"] == due, path
        assert item["deadline_seconds_left"] == 48 * 3600, path
        assert item["overdue"] is False, path
    # The answer to the request itself carries it too.
    assert c.json["deadline_at"] == due

    clock.advance(48 * 3600 + 60)
    for user, path in where:
        item = await _item(user, path, c.id)
        assert item["overdue"] is True, path
        assert item["deadline_seconds_left"] == -60, path


async def test_accepted_runs_against_completion_and_closed_against_nothing(
    scenario: Scenario, clock: Any
) -> None:
    # Monday 23 November 2026, 16:00 in Beijing: due Thursday 16:00.
    c = await scenario.consultation("accepted")
    assert c.json["deadline_kind"] == "complete"
    assert c.json["deadline_at"] == beijing(2026, 11, 26, 16).isoformat()
    signed = await scenario.consultation("signed")
    assert signed.json["deadline_kind"] is None
    assert signed.json["deadline_at"] is None
    assert signed.json["overdue"] is False


@pytest.mark.parametrize(
    ("requested", "due"),
    [
        # Thursday before a weekend: Friday, Monday, Tuesday.
        (beijing(2026, 11, 19, 10), beijing(2026, 11, 24, 10)),
        # Thursday before National Day 2025: Friday, the worked Sunday 28 September, Monday.
        (beijing(2025, 9, 25, 10), beijing(2025, 9, 29, 10)),
        # The last day before it: 9 and 10 October and the worked Saturday 11 October.
        (beijing(2025, 9, 30, 10), beijing(2025, 10, 11, 10)),
        # Thursday before the Spring Festival 2026: Friday, the worked Saturday 14
        # February, then Tuesday 24 February after nine days off.
        (beijing(2026, 2, 12, 10), beijing(2026, 2, 24, 10)),
    ],
    ids=["weekend", "national-day-2025", "national-day-2025-adjusted-saturday", "spring-2026"],
)
async def test_completion_is_due_three_working_days_after_the_request(
    scenario: Scenario, clock: Any, matching: Any, app: Any, requested: datetime, due: datetime
) -> None:
    clock.current = requested
    c = await scenario.consultation("accepted")
    assert c.json["deadline_kind"] == "complete"
    assert c.json["deadline_at"] == due.isoformat()

    clock.current = due
    assert await matching.flag_late_completions() == []
    item = await _item(c.clinic, c.url, c.id)
    assert item["overdue"] is False and item["deadline_seconds_left"] == 0

    clock.current = due + timedelta(seconds=1)
    late = await matching.flag_late_completions()
    assert [x.id for x in late] == [c.id]
    assert await matching.flag_late_completions() == []  # once only
    item = await _item(c.clinic, c.url, c.id)
    assert item["overdue"] is True
    assert item["state"] == "accepted"  # flagged, not moved
    flagged = [e for e in item["events"] if e["kind"] == "completion_overdue"]
    assert len(flagged) == 1
    assert flagged[0]["actor"] is None
    assert flagged[0]["data"]["due_at"] == due.isoformat()
    assert await _audit(app, "consultation.completion_overdue") == [c.id]


async def test_an_adjusted_working_sunday_counts(scenario: Scenario, clock: Any) -> None:
    # Requested at 9:00 on the worked Sunday 28 September 2025: its hours count,
    # then Monday and Tuesday; 1-8 October are off, so the last 9 hours fall on
    # Thursday 9 October.
    clock.current = beijing(2025, 9, 28, 9)
    c = await scenario.consultation("accepted")
    assert c.json["deadline_at"] == beijing(2025, 10, 9, 9).isoformat()


@pytest.mark.parametrize("urgency", ["emergency", "urgent"])
async def test_an_emergency_is_due_in_12_hours_on_any_day(
    scenario: Scenario, clock: Any, matching: Any, urgency: str
) -> None:
    # Friday 20:00 before the National Day week: due at 8:00 on a holiday.
    clock.current = beijing(2025, 9, 30, 20)
    waiting = await scenario.consultation(urgency=urgency)
    assert waiting.json["deadline_kind"] == "accept"
    assert waiting.json["deadline_at"] == beijing(2025, 10, 1, 8).isoformat()
    c = await scenario.consultation("ended", urgency=urgency)
    assert c.json["deadline_kind"] == "complete"
    assert c.json["deadline_at"] == beijing(2025, 10, 1, 8).isoformat()

    clock.advance(12 * 3600 - 1)
    assert await matching.flag_late_completions() == []
    clock.advance(2)
    late = {x.id for x in await matching.flag_late_completions()}
    # The waiting one is late for completion too (its clock runs from the request).
    assert late == {c.id, waiting.id}


class TestConfigured:
    """The three limits come from settings."""

    @pytest.fixture
    def settings(self, tmp_path: Path, demo_database: str) -> Settings:
        return make_settings(
            tmp_path,
            database_url=demo_database,
            session_ttl_seconds=60 * DAY,
            deadline_accept_hours=2,
            deadline_complete_working_days=1,
            deadline_emergency_hours=1.5,
        )

    async def test_the_deadlines_are_configurable(
        self, scenario: Scenario, clock: Any, matching: Any
    ) -> None:
        # Thursday 19 November 2026, 10:00 in Beijing.
        clock.current = beijing(2026, 11, 19, 10)
        routine = await scenario.consultation()
        assert routine.json["deadline_at"] == beijing(2026, 11, 19, 12).isoformat()
        accepted = await scenario.consultation("accepted")
        assert accepted.json["deadline_at"] == beijing(2026, 11, 20, 10).isoformat()
        emergency = await scenario.consultation(urgency="emergency")
        assert emergency.json["deadline_at"] == beijing(2026, 11, 19, 11, 30).isoformat()
        # The acceptance deadline escalates before the (longer) routine waiting time.
        clock.advance(2 * 3600 + 1)
        escalated = {c.id for c in await matching.escalate_overdue()}
        assert routine.id in escalated


def test_a_deadline_must_be_positive(tmp_path: Path) -> None:
    for name in (
        "deadline_accept_hours",
        "deadline_complete_working_days",
        "deadline_emergency_hours",
    ):
        with pytest.raises(SettingsError, match=name):
            make_settings(tmp_path, **{name: 0})
    env = {"TELECONSULT_DEADLINE_COMPLETE_WORKING_DAYS": "5"}
    assert Settings.from_env(env).deadline_rules().complete_working_days == 5


async def test_a_request_past_its_acceptance_deadline_is_escalated_and_pushed(
    scenario: Scenario, clock: Any, matching: Any, app: Any
) -> None:
    # Escalation by waiting time would come first; here it is set past the deadline.
    matching.escalate_after = {u: 7 * DAY for u in matching.escalate_after}
    coord = await connect(await scenario.user("coord1"))
    clinic = await connect(await scenario.user("clinic1"))
    c = await scenario.consultation()
    await coord.drain()
    await clinic.drain()

    clock.advance(48 * 3600 - 1)
    assert await matching.escalate_overdue() == []
    clock.advance(1)  # the deadline falls: escalated at once
    escalated = await matching.escalate_overdue()
    assert [x.id for x in escalated] == [c.id]

    pushed = await coord.drain()
    overdue = [m for m in pushed if m["type"] == "consultation.overdue"]
    assert overdue == [
        {
            "type": "consultation.overdue",
            "id": c.id,
            "state": "escalated",
            "department_id": c.json["department"]["id"],
            "deadline": "accept",
        }
    ]
    assert any(m["type"] == "consultation.changed" for m in pushed)
    # The clinic sees the change, not the coordinators' alarm.
    seen = [m["type"] for m in await clinic.drain()]
    assert "consultation.changed" in seen and "consultation.overdue" not in seen

    clock.advance(1)
    item = await _item(await scenario.user("cardio1"), "/api/queue", c.id)
    assert item["state"] == "escalated" and item["overdue"] is True
    events = (await _item(c.clinic, c.url, c.id))["events"]
    assert [e["data"].get("deadline") for e in events if e["kind"] == "escalated"] == ["accept"]
    await coord.close()
    await clinic.close()


async def test_a_late_completion_is_pushed_to_the_coordinators(
    scenario: Scenario, clock: Any, matching: Any
) -> None:
    c = await scenario.consultation("ended")
    coord = await connect(await scenario.user("coord1"))
    clock.advance(3 * DAY)  # Thursday 16:00 in Beijing: exactly due
    await matching.check_deadlines()
    assert not [m for m in await coord.drain() if m["type"] == "consultation.overdue"]
    clock.advance(1)
    await matching.check_deadlines()
    overdue = [m for m in await coord.drain() if m["type"] == "consultation.overdue"]
    assert [(m["id"], m["deadline"], m["state"]) for m in overdue] == [(c.id, "complete", "ended")]
    await matching.check_deadlines()
    assert not [m for m in await coord.drain() if m["type"] == "consultation.overdue"]
    await coord.close()


async def test_signing_late_closes_the_clock(scenario: Scenario, clock: Any, matching: Any) -> None:
    c = await scenario.consultation("ended")
    clock.advance(4 * DAY)
    await matching.check_deadlines()
    status, data = await c.specialist.post(
        f"{c.url}/opinion",
        {"findings": "所见", "impression": "印象", "recommendations": "建议"},
    )
    assert status == 201, data
    item = await _item(c.clinic, c.url, c.id)
    assert item["state"] == "signed"
    assert item["overdue"] is False and item["deadline_kind"] is None
    # The timeline keeps that it was late.
    assert [e["kind"] for e in item["events"]].count("completion_overdue") == 1
