"""Every error answer of the API has the one JSON shape, whatever produced it."""

from __future__ import annotations

import io
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from records.demo import DEMO_PASSWORD
from web.app import MAX_BODY

LoginAs = Any
Client = TestClient[Any, Any]
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"
PATIENT = {
    "name": "测试患者",
    "sex": "female",
    "birth_date": "1980-01-01",
    "national_id": "110105198001010024",
}


def assert_error_shape(body: Any) -> None:
    assert isinstance(body, dict)
    assert list(body) == ["error"]
    error = body["error"]
    assert isinstance(error, dict)
    assert sorted(error) == ["code", "fields", "message"]
    assert isinstance(error["code"], str)
    assert error["code"]
    assert error["code"] == error["code"].strip().lower()
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["fields"], list)
    assert all(isinstance(f, str) for f in error["fields"])


async def test_every_kind_of_error_has_the_one_shape(login_as: LoginAs, anon: Client) -> None:
    clinic, cardio = await login_as("clinic1"), await login_as("cardio1")
    csrf = {"X-CSRF-Token": clinic.csrf}
    _, data = await clinic.get("/api/patients")
    patient_id = data["patients"][0]["id"]
    _, data = await clinic.get("/api/departments")
    department_id = data["departments"][0]["id"]
    status, data = await clinic.post(
        "/api/consultations",
        {
            "patient_id": patient_id,
            "department_id": department_id,
            "urgency": "routine",
            "reason": "胸闷",
            "question": "是否需要转诊？",
        },
    )
    assert status == 201
    cancel = f"/api/consultations/{data['consultation']['id']}/cancel"
    status, _ = await clinic.post(cancel, {"reason": "已转院"})
    assert status == 200
    origin = str(clinic.client.make_url("/")).rstrip("/")

    responses: list[tuple[int, str, ClientResponse]] = [
        (401, "unauthenticated", await anon.get("/api/patients")),
        (401, "unauthenticated", await anon.get("/api/no-such-route")),
        (
            401,
            "login_failed",
            await anon.post("/api/session", json={"username": "clinic1", "password": "x"}),
        ),
        (403, "csrf_failed", await clinic.client.post("/api/patients", json={})),
        (
            403,
            "bad_origin",
            await anon.post(
                "/api/session",
                json={"username": "clinic1", "password": DEMO_PASSWORD},
                headers={"Origin": "http://evil.example"},
            ),
        ),
        (
            403,
            "role_forbidden",
            await cardio.client.post(
                "/api/patients", json=PATIENT, headers={"X-CSRF-Token": cardio.csrf}
            ),
        ),
        (403, "bad_origin", await clinic.client.get("/ws")),
        (404, "not_found", await clinic.client.get("/api/no-such-route")),
        (404, "not_found", await clinic.client.get(f"/api/consultations/{UNKNOWN_ID}")),
        (404, "not_found", await clinic.client.get("/api/patients/not-an-id")),
        (404, "not_found", await cardio.client.get(f"/api/departments/{UNKNOWN_ID}/specialists")),
        (405, "method_not_allowed", await clinic.client.put("/api/patients", headers=csrf)),
        (405, "method_not_allowed", await clinic.client.patch("/api/health", headers=csrf)),
        (
            409,
            "illegal_transition",
            await clinic.client.post(cancel, json={"reason": "x"}, headers=csrf),
        ),
        (400, "invalid_fields", await clinic.client.post("/api/patients", json={}, headers=csrf)),
        (
            400,
            "invalid_json",
            await clinic.client.post(
                "/api/patients", data="{", headers={**csrf, "Content-Type": "application/json"}
            ),
        ),
        (
            400,
            "bad_request",
            await clinic.client.get("/ws", headers={"Origin": origin}),  # no upgrade
        ),
        (
            415,
            "unsupported_media_type",
            await clinic.client.post("/api/patients", data="name=x", headers=csrf),
        ),
        (
            413,
            "too_large",
            await clinic.client.post(
                "/api/patients",
                data=io.BytesIO(b"[" + b" " * MAX_BODY + b"]"),
                headers={**csrf, "Content-Type": "application/json"},
            ),
        ),
    ]

    for status, code, resp in responses:
        where = (resp.method, resp.url.path, status, code)
        assert resp.status == status, where
        assert resp.content_type == "application/json", where
        body = await resp.json()
        assert_error_shape(body)
        assert body["error"]["code"] == code, (where, body)
