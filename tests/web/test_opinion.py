"""The signed opinion is frozen; its author adds to it only with signed addenda."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import sqlalchemy as sa

from records.schema import audit_log, opinions
from web.app import all_routes
from web.keys import DB

from ..scenario import OPINION, Scenario


def sha256_of(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def stored_opinion(app: Any, opinion_id: str) -> dict[str, Any]:
    async with app[DB].read() as conn:
        row = (
            (await conn.execute(sa.select(opinions).where(opinions.c.id == opinion_id)))
            .mappings()
            .one()
        )
        return dict(row)


async def test_the_author_adds_a_signed_addendum_and_the_original_never_changes(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("signed")
    clinic, cardio, url, original = c.clinic, c.specialist, c.url, c.opinion
    assert original["parent_id"] is None
    assert original["sha256"] == sha256_of({**OPINION, "notes": None})
    before = await stored_opinion(app, original["id"])

    text = "补充：患者今日复查肌钙蛋白阴性，维持原建议。"
    status, data = await cardio.post(f"{url}/opinion/{original['id']}/addendum", {"text": text})
    assert status == 201, data
    addendum = data["opinion"]
    assert addendum["kind"] == "addendum"
    assert addendum["parent_id"] == original["id"]
    assert addendum["body"] == {"text": text}
    assert addendum["sha256"] == sha256_of({"text": text}) != original["sha256"]
    assert addendum["author"]["display_name"] == "张伟"

    # A second addendum is fine too; each is its own signed document.
    status, _ = await cardio.post(
        f"{url}/opinion/{original['id']}/addendum", {"text": "再补充：一周后随访。"}
    )
    assert status == 201

    # The clinic sees the opinion and its addenda, each naming its parent.
    status, data = await clinic.get(url)
    assert status == 200
    detail = data["consultation"]
    assert detail["state"] == "signed"
    assert [(o["kind"], o["parent_id"]) for o in detail["opinions"]] == [
        ("opinion", None),
        ("addendum", original["id"]),
        ("addendum", original["id"]),
    ]
    assert detail["opinions"][0]["body"] == {**OPINION, "notes": None}
    assert detail["opinions"][0]["sha256"] == original["sha256"]
    assert "addendum" in [e["kind"] for e in detail["events"]]

    # The stored original is byte for byte what was signed.
    after = await stored_opinion(app, original["id"])
    assert after == before
    assert after["sha256"] == sha256_of(after["body"])

    async with app[DB].read() as conn:
        actions = [a for (a,) in await conn.execute(sa.select(audit_log.c.action))]
    assert actions.count("consultation.addendum") == 2


async def test_a_referral_takes_an_addendum_too(scenario: Scenario) -> None:
    c = await scenario.consultation("ended")
    cardio, url = c.specialist, c.url
    status, data = await cardio.post(url + "/referral", {"reason": "需门诊行运动平板试验"})
    assert status == 201
    referral = data["opinion"]
    status, data = await cardio.post(
        f"{url}/opinion/{referral['id']}/addendum", {"text": "请携带既往心电图。"}
    )
    assert status == 201, data
    assert data["opinion"]["parent_id"] == referral["id"]


async def test_only_the_author_adds_and_strangers_cannot_tell_it_exists(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("signed")
    users = {n: await scenario.user(n) for n in ("clinic1", "cardio2", "resp1", "clinic2")}
    url, original = c.url, c.opinion
    path = f"{url}/opinion/{original['id']}/addendum"
    # They see the consultation, but did not sign the opinion.
    for name in ("clinic1", "cardio2"):
        status, data = await users[name].post(path, {"text": "我来补充"})
        assert (status, data["error"]["code"]) == (403, "not_author"), name
    # They may not see the consultation at all.
    for name in ("resp1", "clinic2"):
        status, data = await users[name].post(path, {"text": "我来补充"})
        assert (status, data["error"]["code"]) == (404, "not_found"), name
    status, data = await users["clinic1"].get(url)
    assert [o["kind"] for o in data["consultation"]["opinions"]] == ["opinion"]


async def test_no_addendum_before_signing(scenario: Scenario) -> None:
    c = await scenario.consultation("ended")
    clinic, cardio, url = c.clinic, c.specialist, c.url
    status, data = await cardio.post(f"{url}/opinion/{'a' * 32}/addendum", {"text": "先补充"})
    assert (status, data["error"]["code"]) == (409, "not_signed")
    status, data = await clinic.get(url)
    assert data["consultation"]["opinions"] == []


async def test_the_parent_must_be_a_signed_opinion_of_this_consultation(
    scenario: Scenario,
) -> None:
    c, c2 = await scenario.consultation("signed"), await scenario.consultation("signed")
    cardio, url, original = c.specialist, c.url, c.opinion
    other_url, other = c2.url, c2.opinion
    status, data = await cardio.post(f"{url}/opinion/{'b' * 32}/addendum", {"text": "x"})
    assert (status, data["error"]["code"]) == (404, "not_found")
    status, data = await cardio.post(f"{url}/opinion/{other['id']}/addendum", {"text": "x"})
    assert (status, data["error"]["code"]) == (404, "not_found")
    status, data = await cardio.post(f"{url}/opinion/{original['id']}/addendum", {"text": "x"})
    assert status == 201
    # An addendum is added to the opinion, not to another addendum.
    status, data = await cardio.post(
        f"{url}/opinion/{data['opinion']['id']}/addendum", {"text": "y"}
    )
    assert status == 404
    assert other_url != url


@pytest.mark.parametrize("payload", [{}, {"text": ""}, {"text": "   "}, {"text": 5}])
async def test_an_addendum_needs_text(scenario: Scenario, payload: dict[str, Any]) -> None:
    c = await scenario.consultation("signed")
    cardio, url, original = c.specialist, c.url, c.opinion
    status, data = await cardio.post(f"{url}/opinion/{original['id']}/addendum", payload)
    assert (status, data["error"]["code"]) == (400, "invalid_fields")
    assert data["error"]["fields"] == ["text"]


async def test_there_is_no_way_to_edit_or_delete_a_signed_opinion(scenario: Scenario) -> None:
    c = await scenario.consultation("signed")
    clinic, cardio, url, original = c.clinic, c.specialist, c.url, c.opinion
    # The route table has nothing but POSTs (new signed documents) under /opinion.
    opinion_routes = [(r.method, r.path) for r in all_routes() if "/opinion" in r.path]
    assert opinion_routes
    assert {m for m, _ in opinion_routes} == {"POST"}
    headers = {"X-CSRF-Token": cardio.csrf}
    for method in ("PUT", "PATCH", "DELETE"):
        for path in (f"{url}/opinion", f"{url}/opinion/{original['id']}"):
            resp = await cardio.client.request(method, path, json=OPINION, headers=headers)
            assert resp.status in (404, 405), (method, path)
    # Signing again is refused, too.
    status, data = await cardio.post(url + "/opinion", {**OPINION, "impression": "改了"})
    assert status == 409
    status, data = await clinic.get(url)
    assert data["consultation"]["opinions"][0]["body"]["impression"] == OPINION["impression"]
