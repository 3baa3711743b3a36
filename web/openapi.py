"""The API's route table and the OpenAPI 3.1 document built from it.

Routes are declared once (method, path, handler, body model, summary) so that the
router and the served description cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from web.errors import HTTP_CODES

ApiHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One API operation."""

    method: str
    path: str
    handler: ApiHandler
    summary: str
    body: type[BaseModel] | None = None
    status: int = 200
    tag: str = "consultations"
    public: bool = False
    # Optional query parameters: name and JSON schema (``STRING``, ``INTEGER``...).
    query: tuple[tuple[str, dict[str, Any]], ...] = ()
    # A body that is not a JSON model: its media type and schema (an upload, a
    # FHIR Bundle).
    raw_body: tuple[str, dict[str, Any]] | None = None


# The largest integer a query parameter takes (counts, pages, milliseconds): what a
# 32-bit column holds, far below what SQLite's 64-bit integers overflow at.
MAX_QUERY_INT = 2**31 - 1
STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": MAX_QUERY_INT}
DATETIME: dict[str, Any] = {"type": "string", "format": "date-time"}
ID: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{32}$"}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "string"}},
            },
        }
    },
}


def read_only(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """``document`` (JSON-shaped) as a view no one can change, all the way down:
    every object a ``types.MappingProxyType``, every array a tuple.

    One built document is shared by every app of a process (``app.api_spec``);
    a handler that wrote to it would change every other app's.
    """
    return MappingProxyType({key: _frozen(item) for key, item in document.items()})


def read_only_json(document: Any) -> str:
    """The JSON text of a ``read_only`` document (``json.dumps`` takes no views)."""
    return json.dumps(document, default=_thawed)


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, MappingProxyType):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def build_spec(routes: Sequence[Route], *, title: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document for ``routes``."""
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "tags": [route.tag],
            "responses": {
                str(route.status): {
                    "description": "success",
                    **(
                        {"content": {"application/json": {"schema": {"type": "object"}}}}
                        if route.status != 204
                        else {}
                    ),
                },
                "default": {
                    "description": "error ("
                    + ", ".join(f"{s} {c}" for s, c in sorted(HTTP_CODES.items()))
                    + ")",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        params = re.findall(r"{(\w+)}", route.path)
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ] + [
            {"name": q, "in": "query", "required": False, "schema": schema}
            for q, schema in route.query
        ]
        if parameters:
            op["parameters"] = parameters
        if route.raw_body is not None:
            media_type, raw_schema = route.raw_body
            op["requestBody"] = {"required": True, "content": {media_type: {"schema": raw_schema}}}
        if route.body is not None:
            name = route.body.__name__
            schema = route.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                },
            }
        if not route.public:
            op["security"] = [{"session": []}]
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "tc_session"}
            },
        },
    }
