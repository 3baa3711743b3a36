"""The one JSON error shape, and the only place errors become HTTP statuses.

Every error answer of the API is ``{"error": {"code", "message", "fields"}}``:
``code`` is stable (clients branch on it), ``message`` is for people, ``fields``
names the request fields at fault (empty when none is).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from records import errors as records_errors
from records.vocab import ErrorCode
from signaling import errors as sig

log = logging.getLogger(__name__)

# The one table from error code to HTTP status (``tests/web/test_vocabulary.py``
# checks that every code has one). Codes that only the call's WebSocket sends
# (marked "ws") never become an HTTP answer; their status says what they mean.
STATUS: Mapping[ErrorCode, int] = {
    # roots of the error hierarchies: a raise that named no precise code
    ErrorCode.ERROR: 400,
    ErrorCode.RECORDS_ERROR: 400,
    ErrorCode.MEDIA_ERROR: 500,
    ErrorCode.INTERNAL: 500,
    # the request itself
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID: 400,
    ErrorCode.INVALID_FIELDS: 400,
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.RANGE_NOT_SATISFIABLE: 416,
    ErrorCode.TOO_MANY_REQUESTS: 429,
    ErrorCode.TOO_LARGE: 413,
    # who is asking
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.LOGIN_FAILED: 401,
    ErrorCode.ACCOUNT_LOCKED: 429,
    # The password was right; the session is not usable until the second factor.
    ErrorCode.SECOND_FACTOR_REQUIRED: 401,
    # Logged in, but the identity check before a call is too old: a step the
    # caller can take (enter a code), like ``consent_required``.
    ErrorCode.VERIFICATION_REQUIRED: 403,
    # Names the ``code`` field; not 401, which would read as "logged out".
    ErrorCode.WRONG_CODE: 400,
    ErrorCode.BAD_ORIGIN: 403,
    ErrorCode.CSRF_FAILED: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.ROLE_FORBIDDEN: 403,
    # what is asked for
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.ILLEGAL_TRANSITION: 409,
    ErrorCode.RULE_VIOLATION: 403,
    # the workflow
    ErrorCode.PRACTICE_TOO_SHORT: 403,
    # A rule that a later step can satisfy (record the consent, then start) is a
    # conflict with the current state rather than a refusal of the person.
    ErrorCode.CONSENT_REQUIRED: 409,
    ErrorCode.ALREADY_WITHDRAWN: 409,
    ErrorCode.UNKNOWN_DEPARTMENT: 400,
    ErrorCode.UNKNOWN_SPECIALIST: 400,
    ErrorCode.UNKNOWN_ACCOUNT: 400,
    ErrorCode.ADDRESSED_TO_OTHER: 403,
    ErrorCode.NOT_PARTICIPANT: 403,
    ErrorCode.ALREADY_PARTICIPANT: 400,
    ErrorCode.NOT_JOINABLE: 409,
    ErrorCode.CALL_FULL: 403,
    ErrorCode.NOT_ASSIGNED: 403,
    ErrorCode.NOT_SIGNED: 409,
    ErrorCode.NOT_AUTHOR: 403,
    # administration
    ErrorCode.NO_AGREEMENT: 403,
    # Only the password change is open until it is done (a reset's temporary password).
    ErrorCode.PASSWORD_CHANGE_REQUIRED: 403,
    ErrorCode.PASSWORD_TOO_WEAK: 400,
    # A staff list with problems: nothing was stored (the preview names each).
    ErrorCode.IMPORT_INVALID: 422,
    # documents and imported records
    ErrorCode.UNSUPPORTED_TYPE: 415,
    ErrorCode.TYPE_MISMATCH: 400,
    ErrorCode.INVALID_IMAGE: 400,
    ErrorCode.INVALID_DICOM: 400,
    ErrorCode.INVALID_PDF: 400,
    # Small on the wire, too large once decoded (a decompression bomb).
    ErrorCode.DECODED_TOO_LARGE: 413,
    ErrorCode.MALWARE_FOUND: 422,
    # The scanner is configured but gives no verdict: fail closed.
    ErrorCode.SCAN_UNAVAILABLE: 503,
    ErrorCode.FHIR_SERVER_UNAVAILABLE: 503,
    ErrorCode.INVALID_FHIR: 400,
    # A FHIR Bundle about another person than the one it was sent for.
    ErrorCode.PATIENT_MISMATCH: 409,
    # The regional PACS: no endpoint configured here (503), down or refusing our
    # credentials or answering nonsense (502, a bad gateway), or too slow (504).
    ErrorCode.PACS_NOT_CONFIGURED: 503,
    ErrorCode.PACS_UNREACHABLE: 502,
    ErrorCode.PACS_REFUSED: 502,
    ErrorCode.PACS_TIMEOUT: 504,
    ErrorCode.PACS_BAD_ANSWER: 502,
    # The server lacks the CJK font the report is set in: its installation is
    # incomplete (fonts-noto-cjk), nothing the caller can change.
    ErrorCode.REPORT_FONT_MISSING: 503,
    # recordings
    ErrorCode.RECORDING_UNAVAILABLE: 503,  # ws
    ErrorCode.RECORDING_NOT_CONSENTED: 403,
    ErrorCode.RECORDING_FAILED: 500,  # ws
    ErrorCode.ALREADY_RECORDING: 409,
    ErrorCode.NOT_RECORDING: 404,
    ErrorCode.FILE_MISSING: 404,
    ErrorCode.RETENTION_NOT_REACHED: 403,
    # the call's WebSocket messages (ws)
    ErrorCode.BAD_MESSAGE: 400,
    ErrorCode.NOT_AN_OBJECT: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.UNKNOWN_FIELD: 400,
    ErrorCode.MISSING_FIELD: 400,
    ErrorCode.INVALID_FIELD: 400,
    ErrorCode.FIELD_TOO_LONG: 400,
    ErrorCode.NOT_JOINED: 409,
    ErrorCode.ALREADY_JOINED: 409,
    ErrorCode.ALREADY_IN_CALL: 409,
    ErrorCode.UNKNOWN_PEER: 404,
    ErrorCode.CHAT_NOT_STORED: 500,
    ErrorCode.END_NOT_STORED: 503,
    # server health
    ErrorCode.AUDIT_CHAIN_BROKEN: 500,
    ErrorCode.AIORTC_SEAM_BROKEN: 500,
    # The database's disk is full: a condition of the server that passes once
    # there is room again, so "try later" rather than a failure.
    ErrorCode.STORAGE_FULL: 503,
}

# The code of an HTTP error that aiohttp raised itself (no route, wrong method).
HTTP_CODES: Mapping[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    416: ErrorCode.RANGE_NOT_SATISFIABLE,
    429: ErrorCode.TOO_MANY_REQUESTS,
}


def status_of(code: ErrorCode) -> int:
    """The HTTP status of an error code (every code has one: tests/web/test_vocabulary.py)."""
    return STATUS[code]


class ApiError(web.HTTPException):
    """An HTTP error with the JSON body; raise it from handlers."""

    def __init__(
        self, status: int, code: ErrorCode, message: str, fields: tuple[str, ...] | list[str] = ()
    ) -> None:
        self.status_code = status
        super().__init__(
            text=json.dumps(error_body(code, message, fields), ensure_ascii=False),
            content_type="application/json",
        )
        self.code = code


def api_error(code: ErrorCode, message: str, fields: tuple[str, ...] | list[str] = ()) -> ApiError:
    """An ``ApiError`` whose status comes from the one table (raise it from handlers)."""
    return ApiError(status_of(code), code, message, fields)


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
        return error_response(status_of(exc.code), exc.code, exc.message, exc.fields)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return error_response(
                status_of(ErrorCode.INVALID_JSON),
                ErrorCode.INVALID_JSON,
                "the request body is not valid JSON",
            )
        return error_response(
            status_of(ErrorCode.INVALID_FIELDS),
            ErrorCode.INVALID_FIELDS,
            "some fields are missing or invalid",
            validation_fields(exc),
        )
    except web.HTTPException as exc:
        if not api or exc.status < 400 or exc.content_type == "application/json":
            raise
        code = HTTP_CODES.get(exc.status, ErrorCode.ERROR)
        return error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if not api:
            raise
        return error_response(
            status_of(ErrorCode.INTERNAL), ErrorCode.INTERNAL, "internal server error"
        )
