"""The one JSON error shape, and the only place errors become HTTP statuses.

Every error answer of the API is ``{"error": {"code", "message", "fields"}}``:
``code`` is stable (clients branch on it), ``message`` is for people, ``fields``
names the request fields at fault (empty when none is).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from records import errors as records_errors
from signaling import errors as sig

log = logging.getLogger(__name__)

STATUS: dict[type[Exception], int] = {
    sig.NotFound: 404,
    sig.Invalid: 400,
    sig.Forbidden: 403,
    sig.IllegalTransition: 409,
    sig.RuleViolation: 403,
    sig.AuthFailed: 401,
    sig.Locked: 429,
    sig.Unauthenticated: 401,
    records_errors.NotFound: 404,
    records_errors.Conflict: 409,
}
# A rule that a later step can satisfy (record the consent, then start) is a
# conflict with the current state rather than a refusal of the person.
CODE_STATUS = {
    "consent_required": 409,
    "too_large": 413,
    "unsupported_type": 415,
    # A FHIR Bundle about another person than the one it was sent for.
    "patient_mismatch": 409,
}

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    429: "too_many_requests",
}


class ApiError(web.HTTPException):
    """An HTTP error with the JSON body; raise it from handlers."""

    def __init__(
        self, status: int, code: str, message: str, fields: tuple[str, ...] | list[str] = ()
    ) -> None:
        self.status_code = status
        super().__init__(
            text=json.dumps(error_body(code, message, fields), ensure_ascii=False),
            content_type="application/json",
        )
        self.code = code


def error_body(code: str, message: str, fields: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """The error object in its one shape."""
    return {"error": {"code": code, "message": message, "fields": list(fields)}}


def error_response(
    status: int, code: str, message: str, fields: tuple[str, ...] | list[str] = ()
) -> web.Response:
    """An error answer in the one shape."""
    return web.json_response(
        error_body(code, message, fields),
        status=status,
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )


def validation_fields(exc: ValidationError) -> list[str]:
    """Dotted names of the fields a pydantic error is about (deduplicated, in order)."""
    seen: dict[str, None] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        if err["type"] == "json_invalid":
            continue
        seen[".".join(loc) or "body"] = None
    return list(seen)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn domain errors into the JSON error shape for /api and /ws paths."""
    api = request.path.startswith(("/api/", "/ws"))
    try:
        return await handler(request)
    except ApiError:
        raise
    except (sig.SignalingError, records_errors.RecordsError) as exc:
        status = CODE_STATUS.get(exc.code) or next(
            (s for cls, s in STATUS.items() if isinstance(exc, cls)), 400
        )
        return error_response(status, exc.code, exc.message, exc.fields)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return error_response(400, "invalid_json", "the request body is not valid JSON")
        return error_response(
            400, "invalid_fields", "some fields are missing or invalid", validation_fields(exc)
        )
    except web.HTTPException as exc:
        if not api or exc.status < 400 or exc.content_type == "application/json":
            raise
        code = HTTP_CODES.get(exc.status, "error")
        return error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if not api:
            raise
        return error_response(500, "internal", "internal server error")
