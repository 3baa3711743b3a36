"""API of the second factor (TOTP): enrolment, the login's second step, the check
before a call, and the administrator's reset (the rules: signaling/workflow/second_factor.py)."""

from __future__ import annotations

from aiohttp import web

from web import schemas
from web.auth import actor
from web.keys import ADMIN, SECOND_FACTOR
from web.openapi import Route
from web.payloads import body, iso


async def start_enrolment(request: web.Request) -> web.StreamResponse:
    """Start (or show again) the enrolment: the secret and its otpauth URI."""
    enrolment = await request.app[SECOND_FACTOR].begin_enrolment(actor(request))
    return web.json_response({"secret": enrolment.secret, "otpauth_uri": enrolment.uri})


async def confirm_enrolment(request: web.Request) -> web.StreamResponse:
    """Confirm the enrolment with a code; answers the recovery codes (shown once)."""
    data = await body(request, schemas.CodeIn)
    codes = await request.app[SECOND_FACTOR].confirm_enrolment(actor(request), data.code)
    response = web.json_response({"recovery_codes": codes})
    # Shown once: no cache may keep them.
    response.headers["Cache-Control"] = "no-store"
    return response


async def second_factor(request: web.Request) -> web.StreamResponse:
    """The login's second step: a code from the authenticator app or a recovery code."""
    data = await body(request, schemas.CodeIn)
    method = await request.app[SECOND_FACTOR].verify_login(actor(request), data.code)
    return web.json_response({"method": method})


async def verify(request: web.Request) -> web.StreamResponse:
    """Confirm one's identity to join a consultation's call (on its timeline)."""
    data = await body(request, schemas.VerifyIn)
    at = await request.app[SECOND_FACTOR].verify_for_call(
        actor(request), data.consultation_id, data.code
    )
    return web.json_response({"verified_at": iso(at)})


async def totp_reset(request: web.Request) -> web.StreamResponse:
    """Remove an account's second factor and end its sessions (administrators)."""
    ended = await request.app[ADMIN].reset_second_factor(
        actor(request), request.match_info["account_id"]
    )
    return web.json_response({"sessions_ended": ended})


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/auth/enrolment",
        start_enrolment,
        "Start enrolling the second factor",
        tag="auth",
    ),
    Route(
        "POST",
        "/api/auth/enrolment/confirm",
        confirm_enrolment,
        "Confirm the second factor with a code",
        schemas.CodeIn,
        tag="auth",
    ),
    Route(
        "POST",
        "/api/auth/second-factor",
        second_factor,
        "Second step of the login",
        schemas.CodeIn,
        tag="auth",
    ),
    Route(
        "POST",
        "/api/auth/verify",
        verify,
        "Confirm identity before joining a call",
        schemas.VerifyIn,
        tag="auth",
    ),
    Route(
        "POST",
        "/api/admin/accounts/{account_id}/totp-reset",
        totp_reset,
        "Reset an account's second factor",
        tag="admin",
    ),
)
