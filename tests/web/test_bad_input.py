"""Bad request bodies are refused with 400 naming the bad fields, and nothing is stored."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import sqlalchemy as sa

from records.schema import consents, consultation_events, consultations, patients, roster
from web.app import MAX_BODY
from web.keys import DB

from ..scenario import Scenario

LoginAs = Any
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"
TABLES = (patients, consents, consultations, consultation_events, roster)

PATIENT = {
    "name": "测试患者",
    "sex": "female",
    "birth_date": "1980-01-01",
    "national_id": "110105198001010024",
    "phone": "138 0000 0009",
}
CONSENT = {
    "scope_consultation": True,
    "scope_recording": False,
    "given_by": "陈阿姨",
    "relationship": "self",
}
REASON = {"reason": "不属本科范围"}
SCOPES = ("scope_consultation", "scope_recording")
TARGET = "target_specialist_id"
UDEPT, USPEC = "unknown_department", "unknown_specialist"


async def counts(app: Any) -> dict[str, int]:
    """Rows in every table a bad request could have written to."""
    async with app[DB].read() as conn:
        return {
            t.name: int((await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar())
            for t in TABLES
        }


@pytest.fixture
async def ids(scenario: Scenario) -> dict[str, Any]:
    """Logged-in demo users and the ids a client would know, with one waiting request."""
    users = {n: await scenario.user(n) for n in ("clinic1", "clinic2", "cardio1", "coord1")}
    coord = users["coord1"]
    found: dict[str, Any] = await scenario.ids()
    for code in ("cardiology", "respiratory"):
        _, data = await coord.get(f"/api/departments/{found[code]}/specialists")
        found.update({s["display_name"]: s["id"] for s in data["specialists"]})
    found.update(cardio2=found["刘芳"], resp1=found["周敏"], CARDIOLOGY=found["cardiology"].upper())
    found["consultation"] = (await scenario.consultation(patient="陈阿姨")).id
    found["users"] = users
    return found


def fill(body: Any, ids: dict[str, Any]) -> Any:
    """``body`` with ``{name}`` placeholders in its strings replaced by ids."""
    if isinstance(body, dict):
        return {k: fill(v, ids) for k, v in body.items()}
    return body.format(**ids) if isinstance(body, str) else body


P, K = "/api/patients", "/api/patients/{陈阿姨}/consents"
Q, D, R = "/api/consultations", "/api/consultations/{consultation}/decline", "/api/roster"
VALID: dict[str, dict[str, Any]] = {
    P: PATIENT,
    K: CONSENT,
    Q: {
        "patient_id": "{陈阿姨}",
        "department_id": "{cardiology}",
        "urgency": "routine",
        "reason": "反复咳嗽三月",
        "question": "是否需要进一步检查？",
    },
    D: REASON,
    R: {
        "department_id": "{cardiology}",
        "specialist_id": "{cardio2}",
        "starts_at": "2026-11-24T08:00:00+08:00",
        "ends_at": "2026-11-24T20:00:00+08:00",
    },
}
WHO = {P: "clinic1", K: "clinic1", Q: "clinic1", D: "cardio1", R: "coord1"}
MISSING = object()
BAD = "invalid_fields"


def case(
    name: str,
    path: str,
    changes: dict[str, Any] | None,
    fields: list[str],
    status: int = 400,
    code: str = BAD,
    *,
    url: str | None = None,
    who: str | None = None,
) -> Any:
    """One bad request: the valid body of ``path`` with ``changes`` (None: an empty body)."""
    if changes is None:
        body: dict[str, Any] = {}
    else:
        body = {k: v for k, v in {**VALID[path], **changes}.items() if v is not MISSING}
    return pytest.param(who or WHO[path], url or path, body, status, code, fields, id=name)


ID = UNKNOWN_ID
CASES = [
    # -- patients
    case("patient: empty", P, None, ["birth_date", "name", "national_id", "sex"]),
    case("patient: no name", P, {"name": MISSING}, ["name"]),
    case("patient: name a number", P, {"name": 42}, ["name"]),
    case("patient: name too long", P, {"name": "王" * 101}, ["name"]),
    case("patient: blank name", P, {"name": "   "}, ["name"]),
    case("patient: unknown sex", P, {"sex": "m"}, ["sex"]),
    case("patient: impossible date", P, {"birth_date": "1980-02-30"}, ["birth_date"]),
    case("patient: date a number", P, {"birth_date": 19800101}, ["birth_date"]),
    case("patient: born tomorrow", P, {"birth_date": "2026-11-24"}, ["birth_date"]),
    case("patient: ID check digit", P, {"national_id": "110105198001010025"}, ["national_id"]),
    case("patient: ID too short", P, {"national_id": "11010519800101002"}, ["national_id"]),
    case("patient: ID a number", P, {"national_id": 110105198001010024}, ["national_id"]),
    case("patient: bad phone", P, {"phone": "call me"}, ["phone"]),
    case("patient: unknown field", P, {"notes": "x"}, ["notes"]),
    case("patient: two bad fields", P, {"name": "", "sex": None}, ["name", "sex"]),
    # -- consents
    case("consent: empty", K, None, ["given_by", "relationship", *SCOPES]),
    case("consent: 'true' for a bool", K, {"scope_consultation": "true"}, [SCOPES[0]]),
    case("consent: 1 for a bool", K, {"scope_recording": 1}, [SCOPES[1]]),
    case("consent: given_by a number", K, {"given_by": 7}, ["given_by"]),
    case("consent: given_by too long", K, {"given_by": "陈" * 101}, ["given_by"]),
    case("consent: unknown relationship", K, {"relationship": "friend"}, ["relationship"]),
    case("consent: unknown field", K, {"witness": "x"}, ["witness"]),
    case("consent: no consultation", K, {SCOPES[0]: False}, [SCOPES[0]], code="invalid"),
    case(
        "consent: recording only",
        K,
        {SCOPES[0]: False, SCOPES[1]: True},
        [SCOPES[0]],
        code="invalid",
    ),
    case(
        "consent: unknown patient",
        K,
        {},
        ["patient_id"],
        404,
        "not_found",
        url=f"/api/patients/{ID}/consents",
    ),
    case(
        "consent: malformed patient id",
        K,
        {},
        ["patient_id"],
        404,
        "not_found",
        url="/api/patients/not-an-id/consents",
    ),
    case("consent: other clinic's patient", K, {}, ["patient_id"], 404, "not_found", who="clinic2"),
    # -- consultations
    case(
        "request: empty", Q, None, ["department_id", "patient_id", "question", "reason", "urgency"]
    ),
    case("request: no question", Q, {"question": MISSING}, ["question"]),
    case("request: reason too long", Q, {"reason": "咳" * 501}, ["reason"]),
    case("request: question too long", Q, {"question": "问" * 4001}, ["question"]),
    case("request: reason a number", Q, {"reason": 3}, ["reason"]),
    case("request: unknown urgency", Q, {"urgency": "asap"}, ["urgency"]),
    case("request: unknown field", Q, {"priority": 1}, ["priority"]),
    case("request: malformed patient id", Q, {"patient_id": "1"}, ["patient_id"]),
    case("request: upper-case id", Q, {"department_id": "{CARDIOLOGY}"}, ["department_id"]),
    case("request: malformed target", Q, {TARGET: "x"}, [TARGET]),
    case("request: unknown department", Q, {"department_id": ID}, ["department_id"], 400, UDEPT),
    case("request: unknown patient", Q, {"patient_id": ID}, ["patient_id"], 404, "not_found"),
    case("request: other clinic's patient", Q, {}, ["patient_id"], 404, "not_found", who="clinic2"),
    case("request: unknown target", Q, {TARGET: ID}, [TARGET], 400, USPEC),
    case("request: target of another department", Q, {TARGET: "{resp1}"}, [TARGET], 400, USPEC),
    # -- decline
    case("decline: no reason", D, None, ["reason"]),
    case("decline: blank reason", D, {"reason": " "}, ["reason"]),
    case("decline: reason too long", D, {"reason": "否" * 501}, ["reason"]),
    case("decline: reason a bool", D, {"reason": True}, ["reason"]),
    case("decline: unknown field", D, {"by": "me"}, ["by"]),
    case(
        "decline: unknown consultation",
        D,
        {},
        [],
        404,
        "not_found",
        url=f"/api/consultations/{ID}/decline",
    ),
    # -- roster
    case("duty: empty", R, None, ["department_id", "ends_at", "specialist_id", "starts_at"]),
    case("duty: no time zone", R, {"starts_at": "2026-11-24T08:00:00"}, ["starts_at"]),
    case("duty: not a time", R, {"ends_at": "tonight"}, ["ends_at"]),
    case(
        "duty: ends before it starts",
        R,
        {"ends_at": "2026-11-24T07:00:00+08:00"},
        ["ends_at"],
        code="invalid",
    ),
    case("duty: specialist id a number", R, {"specialist_id": 12}, ["specialist_id"]),
    case("duty: unknown field", R, {"note": "x"}, ["note"]),
    case("duty: unknown department", R, {"department_id": ID}, ["department_id"], 400, UDEPT),
    case("duty: unknown specialist", R, {"specialist_id": ID}, ["specialist_id"], 400, USPEC),
    case("duty: other department", R, {"specialist_id": "{resp1}"}, ["specialist_id"], 400, USPEC),
]


@pytest.mark.parametrize(("who", "path", "body", "status", "code", "fields"), CASES)
async def test_bad_body_is_refused_naming_the_fields_and_nothing_is_stored(
    who: str,
    path: str,
    body: dict[str, Any],
    status: int,
    code: str,
    fields: list[str],
    ids: dict[str, Any],
    app: Any,
) -> None:
    users = ids["users"]
    before = await counts(app)

    got_status, data = await users[who].post(path.format(**ids), fill(body, ids))

    assert got_status == status, data
    assert data["error"]["code"] == code
    assert sorted(data["error"]["fields"]) == fields
    assert await counts(app) == before
    _, data = await users["clinic1"].get(f"/api/consultations/{ids['consultation']}")
    assert data["consultation"]["state"] == "requested"


@pytest.mark.parametrize("path", list(VALID))
async def test_the_valid_body_of_each_endpoint_is_accepted(
    path: str, ids: dict[str, Any], app: Any
) -> None:
    # Each bad case above differs from these in the fields it names.
    before = await counts(app)
    status, data = await ids["users"][WHO[path]].post(path.format(**ids), fill(VALID[path], ids))
    assert status in (200, 201), data
    assert await counts(app) != before


async def raw_post(user: Any, data: Any, content_type: str) -> tuple[int, str, Any]:
    resp = await user.client.post(
        "/api/patients",
        data=data,
        headers={"X-CSRF-Token": user.csrf, "Content-Type": content_type},
    )
    return resp.status, resp.content_type, await resp.json()


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code", "fields"),
    [
        ("name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type", []),
        ('{"name": "x"}', "text/plain", 415, "unsupported_media_type", []),
        (b"{}", "application/octet-stream", 415, "unsupported_media_type", []),
        ('{"name": ', "application/json", 400, "invalid_json", []),
        ("", "application/json", 400, "invalid_json", []),
        (b'{"name": "\xff"}', "application/json", 400, "invalid_json", []),
        ("[" * 10_000 + "]" * 10_000, "application/json", 400, "invalid_json", []),
        ("[]", "application/json", 400, "invalid_fields", ["body"]),
        ('[{"name": "x"}]', "application/json", 400, "invalid_fields", ["body"]),
        ("null", "application/json", 400, "invalid_fields", ["body"]),
        ('"text"', "application/json", 400, "invalid_fields", ["body"]),
    ],
)
async def test_bodies_that_are_not_a_json_object(
    data: Any,
    content_type: str,
    status: int,
    code: str,
    fields: list[str],
    login_as: LoginAs,
    app: Any,
) -> None:
    user = await login_as("clinic1")
    before = await counts(app)

    got = await raw_post(user, data, content_type)

    assert got == (status, "application/json", error(code, got[2], fields))
    assert await counts(app) == before


def error(code: str, body: Any, fields: list[str]) -> Any:
    """The expected error body (the message is for people, so it is taken as given)."""
    return {"error": {"code": code, "message": body["error"]["message"], "fields": fields}}


async def test_json_with_a_charset_parameter_is_json(login_as: LoginAs) -> None:
    user = await login_as("clinic1")

    status, _, data = await raw_post(
        user, json.dumps(PATIENT).encode(), "application/json; charset=utf-8"
    )
    assert status == 201, data


async def test_body_over_one_mebibyte_is_413(login_as: LoginAs, app: Any) -> None:
    user = await login_as("clinic1")
    before = await counts(app)
    padded = b'{"name": "' + b" " * MAX_BODY + b'"}'

    status, content_type, data = await raw_post(user, io.BytesIO(padded), "application/json")

    assert (status, content_type) == (413, "application/json")
    assert data == error("too_large", data, [])
    assert isinstance(data["error"]["message"], str)
    assert await counts(app) == before
