"""The served OpenAPI document is valid and describes exactly the API the router serves."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from web.app import VERSION, all_routes, api_spec
from web.auth import PUBLIC_API
from web.keys import OPENAPI
from web.openapi import build_spec
from web.schemas import ADMIN_BODIES, BODIES

Client = TestClient[Any, Any]
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture
async def spec(anon: Client) -> dict[str, Any]:
    resp = await anon.get("/api/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body: dict[str, Any] = await resp.json()
    return body


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def resolve(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/components/schemas/")
    schema: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


async def test_the_document_is_valid_openapi_and_needs_no_login(spec: dict[str, Any]) -> None:
    validate(spec)
    assert spec["openapi"].startswith("3.1")


async def test_every_api_route_is_described_and_every_description_is_routed(
    spec: dict[str, Any], app: web.Application
) -> None:
    routed = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api")
        and route.method not in ("HEAD", "*")
    }
    assert routed
    assert set(operations(spec)) == routed


async def test_path_parameters_match_the_paths(spec: dict[str, Any]) -> None:
    for (method, path), op in operations(spec).items():
        names = re.findall(r"{(\w+)}", path)
        params = [p for p in op.get("parameters", []) if p["in"] == "path"]
        assert [p["name"] for p in params] == names, (method, path)
        assert all(p["required"] for p in params)


async def test_public_operations_are_exactly_the_ones_that_need_no_session(
    spec: dict[str, Any],
) -> None:
    public = {key for key, op in operations(spec).items() if "security" not in op}
    assert public == set(PUBLIC_API)


async def test_each_body_model_is_described_with_its_required_fields(
    spec: dict[str, Any],
) -> None:
    ops = operations(spec)
    described: set[str] = set()
    for route in all_routes():
        op = ops[(route.method, route.path)]
        if route.raw_body is not None:
            media_type, _ = route.raw_body
            assert list(op["requestBody"]["content"]) == [media_type], route.path
            continue
        if route.body is None:
            assert "requestBody" not in op, route.path
            continue
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = resolve(spec, ref)
        fields = route.body.model_fields
        required = {name for name, f in fields.items() if f.is_required()}
        assert set(schema.get("required", [])) == required, route.body.__name__
        assert set(schema["properties"]) == set(fields), route.body.__name__
        # Unknown fields are refused (400), and the document says so.
        assert schema.get("additionalProperties") is False, route.body.__name__
        described.add(route.body.__name__)
    assert described == {b.__name__ for b in BODIES + ADMIN_BODIES}


async def test_success_statuses_are_the_documented_ones(spec: dict[str, Any]) -> None:
    ops = operations(spec)
    for route in all_routes():
        responses = ops[(route.method, route.path)]["responses"]
        assert str(route.status) in responses, route.path
        assert responses["default"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    error = resolve(spec, "#/components/schemas/Error")
    assert error["properties"]["error"]["required"] == ["code", "message", "fields"]


async def test_documented_statuses_hold_for_real_requests(
    spec: dict[str, Any], login_as: Any
) -> None:
    clinic = await login_as("clinic1")
    body = {
        "name": "测试患者",
        "sex": "female",
        "birth_date": "1980-01-01",
        "national_id": "110105198001010024",
    }
    status, _ = await clinic.post("/api/patients", body)
    assert "201" in spec["paths"]["/api/patients"]["post"]["responses"]
    assert status == 201
    status, _ = await clinic.delete("/api/session")
    assert "204" in spec["paths"]["/api/session"]["delete"]["responses"]
    assert status == 204


async def test_no_handler_can_change_the_document_every_app_shares(
    spec: dict[str, Any], app: web.Application
) -> None:
    shared = app[OPENAPI]
    assert shared is api_spec()  # built once per process, for every app
    with pytest.raises(TypeError):
        shared["paths"]["/api/forged"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        shared["components"]["schemas"]["Error"]["required"] = []  # type: ignore[index]
    operation = next(iter(operations(shared).values()))  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        operation["tags"].append("forged")
    # Served as it was built: the read-only view changes nothing of the JSON.
    assert spec == build_spec(all_routes(), title="teleconsult API", version=VERSION)
