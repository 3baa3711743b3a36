"""Hostile JSON bodies: deep nesting and text that is not text answer 4xx, never 500.

``json.loads`` recurses once per level, so 1,000 nested arrays used to raise
``RecursionError`` (a 500) for anyone, before the access check. A stranger must
get the answer of an unknown patient, whatever the body; the owner gets a 400
that says what is wrong.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ..scenario import Scenario

DEEP = "[" * 1000 + "]" * 1000
VERY_DEEP = "[" * 200_000 + "]" * 200_000
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]


async def post_raw(user: Any, path: str, raw: str, content_type: str) -> tuple[int, Any]:
    resp = await user.client.post(
        path,
        data=raw.encode("utf-8", "surrogatepass"),
        headers={"Content-Type": content_type, "X-CSRF-Token": user.csrf},
    )
    return resp.status, await resp.json()


@pytest.mark.parametrize("raw", [DEEP, VERY_DEEP, '{"entry": ' + DEEP + "}"])
async def test_a_deeply_nested_fhir_import_is_refused_by_name_for_the_owner(
    scenario: Scenario, caplog: pytest.LogCaptureFixture, raw: str
) -> None:
    pid = await scenario.patient()
    clinic = await scenario.user("clinic1")
    status, data = await post_raw(clinic, f"/api/patients/{pid}/fhir", raw, "application/fhir+json")
    assert (status, data["error"]["code"]) == (400, "invalid_json"), data
    assert "nest" in data["error"]["message"]
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("who", ["cardio1", "coord1", "clinic2"])
async def test_a_deeply_nested_fhir_import_from_a_stranger_is_a_plain_not_found(
    scenario: Scenario, caplog: pytest.LogCaptureFixture, who: str
) -> None:
    pid = await scenario.patient()
    user = await scenario.user(who)
    answers = [
        await post_raw(user, f"/api/patients/{target}/fhir", VERY_DEEP, "application/json")
        for target in (pid, UNKNOWN_ID)
    ]
    # The same answer as for a patient that does not exist: the body is not looked at.
    assert answers[0] == answers[1]
    assert answers[0][0] == 404, answers
    assert tracebacks(caplog) == []


async def test_a_fhir_import_with_a_lone_surrogate_is_refused_and_nothing_is_stored(
    scenario: Scenario,
) -> None:
    pid = await scenario.patient()
    clinic = await scenario.user("clinic1")
    raw = '{"resourceType": "Bundle", "type": "collection", "entry": [], "x": "\\ud800"}'
    status, data = await post_raw(clinic, f"/api/patients/{pid}/fhir", raw, "application/json")
    assert (status, data["error"]["code"]) == (400, "invalid_json"), data
    assert "Unicode" in data["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('{"reason": ' + DEEP + "}", "nest"),
        ('{"reason": ' + VERY_DEEP + "}", "nest"),
        ('{"reason": "a\\u0000b"}', "NUL"),
    ],
)
async def test_a_hostile_json_body_is_a_400_naming_the_problem(
    scenario: Scenario, caplog: pytest.LogCaptureFixture, raw: str, words: str
) -> None:
    c = await scenario.consultation()
    clinic = await scenario.user("clinic1")
    status, data = await post_raw(clinic, f"{c.url}/cancel", raw, "application/json")
    assert (status, data["error"]["code"]) == (400, "invalid_json"), data
    assert words in data["error"]["message"]
    status, data = await clinic.get(c.url)
    assert data["consultation"]["state"] == "requested"
    assert tracebacks(caplog) == []
