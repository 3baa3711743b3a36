"""The administrator's JSON API: institutions, agreements, departments, accounts, imports."""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from records.models import Account, Agreement, Department, Institution
from records.staff_import import Problem, StaffRow
from records.vocab import ErrorCode
from signaling.workflow.accounts import AccountFields, ImportResult, Issued
from signaling.workflow.admin import AdminService
from web import schemas
from web.auth import actor
from web.errors import api_error
from web.keys import ADMIN, CLOCK
from web.openapi import STRING, Route
from web.payloads import body, iso

# A staff list of a few thousand people fits well within this.
MAX_IMPORT_BYTES = 1024 * 1024


def _service(request: web.Request) -> AdminService:
    return request.app[ADMIN]


def institution_json(i: Institution) -> dict[str, Any]:
    """An institution."""
    return {"id": i.id, "name": i.name, "kind": i.kind, "region": i.region}


def agreement_json(a: Agreement) -> dict[str, Any]:
    """An agreement between two institutions."""
    return {
        "id": a.id,
        "requesting_institution_id": a.requesting_institution_id,
        "consulting_institution_id": a.consulting_institution_id,
        "kind": a.kind,
        "since": iso(a.since),
        "ended_at": iso(a.ended_at),
        "active": a.active,
    }


def department_json(d: Department) -> dict[str, Any]:
    """A department."""
    return {"id": d.id, "institution_id": d.institution_id, "code": d.code, "name": d.name}


def admin_account_json(a: Account, today: date) -> dict[str, Any]:
    """An account as the administrator sees it (never the password hash)."""
    return {
        "id": a.id,
        "username": a.username,
        "display_name": a.display_name,
        "role": a.role,
        "institution_id": a.institution_id,
        "title": a.title,
        "licence_no": a.licence_no,
        "practice_start": iso(a.practice_start),
        "practice_years": int(a.years_of_practice(today)),
        "phone": a.phone,
        "department_ids": sorted(a.department_ids),
        "active": a.active,
        "deactivated_at": iso(a.deactivated_at),
        "must_change_password": a.must_change_password,
    }


def _issued(request: web.Request, issued: Issued) -> dict[str, Any]:
    today = request.app[CLOCK].now().date()
    # The temporary password is in this answer only: it is stored as a hash.
    return {
        "account": admin_account_json(issued.account, today),
        "temporary_password": issued.password,
    }


def _row_json(row: StaffRow) -> dict[str, Any]:
    return {
        "row": row.row,
        "username": row.username,
        "display_name": row.display_name,
        "role": row.role,
        "institution": row.institution,
        "departments": list(row.departments),
        "title": row.title,
        "licence_no": row.licence_no,
        "practice_start": iso(row.practice_start),
        "phone": row.phone,
    }


def _problem_json(p: Problem) -> dict[str, Any]:
    return {"row": p.row, "column": p.column, "code": p.code, "message": p.message}


def _import_json(request: web.Request, result: ImportResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "rows": [_row_json(r) for r in result.rows],
        # Every row as read from the file, valid or not (the preview marks the bad cells).
        "cells": [{**c, "_row": int(c["_row"] or 0)} for c in result.cells],
        "problems": [_problem_json(p) for p in result.problems],
        "created": [_issued(request, i) for i in result.issued],
    }


# -- handlers -------------------------------------------------------------------------


async def list_institutions(request: web.Request) -> web.StreamResponse:
    """Every institution."""
    items = await _service(request).institutions(actor(request))
    return web.json_response({"institutions": [institution_json(i) for i in items]})


async def add_institution(request: web.Request) -> web.StreamResponse:
    """Add an institution."""
    data = await body(request, schemas.InstitutionIn)
    i = await _service(request).add_institution(
        actor(request), name=data.name, kind=data.kind, region=data.region
    )
    return web.json_response({"institution": institution_json(i)}, status=201)


async def edit_institution(request: web.Request) -> web.StreamResponse:
    """Change an institution."""
    data = await body(request, schemas.InstitutionIn)
    i = await _service(request).edit_institution(
        actor(request),
        request.match_info["institution_id"],
        name=data.name,
        kind=data.kind,
        region=data.region,
    )
    return web.json_response({"institution": institution_json(i)})


async def list_agreements(request: web.Request) -> web.StreamResponse:
    """Every agreement, ended ones too."""
    items = await _service(request).agreements(actor(request))
    return web.json_response({"agreements": [agreement_json(a) for a in items]})


async def add_agreement(request: web.Request) -> web.StreamResponse:
    """Let an institution ask another."""
    data = await body(request, schemas.AgreementIn)
    a = await _service(request).add_agreement(
        actor(request),
        requesting_institution_id=data.requesting_institution_id,
        consulting_institution_id=data.consulting_institution_id,
        kind=data.kind,
        since=data.since,
    )
    return web.json_response({"agreement": agreement_json(a)}, status=201)


async def end_agreement(request: web.Request) -> web.StreamResponse:
    """End an agreement."""
    a = await _service(request).end_agreement(actor(request), request.match_info["agreement_id"])
    return web.json_response({"agreement": agreement_json(a)})


async def list_departments(request: web.Request) -> web.StreamResponse:
    """Every department of every institution."""
    items = await _service(request).departments(actor(request))
    return web.json_response({"departments": [department_json(d) for d, _ in items]})


async def add_department(request: web.Request) -> web.StreamResponse:
    """Add a department."""
    data = await body(request, schemas.DepartmentIn)
    d = await _service(request).add_department(
        actor(request), institution_id=data.institution_id, code=data.code, name=data.name
    )
    return web.json_response({"department": department_json(d)}, status=201)


async def edit_department(request: web.Request) -> web.StreamResponse:
    """Rename a department."""
    data = await body(request, schemas.DepartmentEditIn)
    d = await _service(request).edit_department(
        actor(request), request.match_info["department_id"], name=data.name
    )
    return web.json_response({"department": department_json(d)})


def _fields(data: schemas.AccountEditIn) -> AccountFields:
    return AccountFields(
        display_name=data.display_name,
        role=data.role,
        title=data.title,
        licence_no=data.licence_no,
        practice_start=data.practice_start,
        phone=data.phone,
        department_ids=tuple(data.department_ids),
    )


async def list_accounts(request: web.Request) -> web.StreamResponse:
    """Accounts, with filters (deactivated ones too)."""
    q = request.query
    active = {"true": True, "false": False}.get(q.get("active", ""))
    items = await _service(request).accounts(
        actor(request),
        institution_id=q.get("institution_id") or None,
        role=q.get("role") or None,
        active=active,
        text=(q.get("q") or "").strip()[:64] or None,
    )
    today = request.app[CLOCK].now().date()
    return web.json_response({"accounts": [admin_account_json(a, today) for a in items]})


async def add_account(request: web.Request) -> web.StreamResponse:
    """Create an account; the answer holds its temporary password (once)."""
    data = await body(request, schemas.AccountIn)
    issued = await _service(request).add_account(
        actor(request),
        username=data.username,
        institution_id=data.institution_id,
        fields=_fields(data),
    )
    return web.json_response(_issued(request, issued), status=201)


async def edit_account(request: web.Request) -> web.StreamResponse:
    """Change an account."""
    data = await body(request, schemas.AccountEditIn)
    a = await _service(request).edit_account(
        actor(request), request.match_info["account_id"], _fields(data)
    )
    today = request.app[CLOCK].now().date()
    return web.json_response({"account": admin_account_json(a, today)})


async def deactivate_account(request: web.Request) -> web.StreamResponse:
    """Deactivate an account: its sessions end and its sockets close at once."""
    a = await _service(request).deactivate(actor(request), request.match_info["account_id"])
    today = request.app[CLOCK].now().date()
    return web.json_response({"account": admin_account_json(a, today)})


async def reactivate_account(request: web.Request) -> web.StreamResponse:
    """Let a deactivated account log in again."""
    a = await _service(request).reactivate(actor(request), request.match_info["account_id"])
    today = request.app[CLOCK].now().date()
    return web.json_response({"account": admin_account_json(a, today)})


async def reset_password(request: web.Request) -> web.StreamResponse:
    """A temporary password (in this answer only), changed at the next login."""
    issued = await _service(request).reset_password(
        actor(request), request.match_info["account_id"]
    )
    return web.json_response(_issued(request, issued))


async def _upload(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_IMPORT_BYTES:
        raise api_error(ErrorCode.TOO_LARGE, "the staff list is too large", ("file",))
    data = await request.read()
    if not data:
        raise api_error(
            ErrorCode.INVALID_FIELDS, "send the CSV or XLSX file as the body", ("file",)
        )
    return data


async def import_preview(request: web.Request) -> web.StreamResponse:
    """Check a staff list (CSV or XLSX, the raw body): rows and problems, nothing stored."""
    data = await _upload(request)
    result = await _service(request).import_preview(actor(request), data)
    return web.json_response(_import_json(request, result))


async def import_commit(request: web.Request) -> web.StreamResponse:
    """Store every person of a staff list, or nobody (422 with the problems)."""
    data = await _upload(request)
    result = await _service(request).import_commit(actor(request), data)
    if not result.ok:
        problems = _import_json(request, result)
        return web.json_response(
            {
                "error": {
                    "code": ErrorCode.IMPORT_INVALID.value,
                    "message": "the staff list has problems; nothing was stored",
                    "fields": [f"row {p.row}: {p.column}" for p in result.problems],
                },
                "problems": problems["problems"],
            },
            status=422,
        )
    return web.json_response(_import_json(request, result), status=201)


FILE_BODY = (
    "application/octet-stream",
    {"type": "string", "format": "binary", "description": "a CSV or XLSX staff list"},
)
A = "/api/admin"
ROUTES: tuple[Route, ...] = (
    Route("GET", A + "/institutions", list_institutions, "Institutions", tag="admin"),
    Route(
        "POST",
        A + "/institutions",
        add_institution,
        "Add an institution",
        schemas.InstitutionIn,
        201,
        tag="admin",
    ),
    Route(
        "PUT",
        A + "/institutions/{institution_id}",
        edit_institution,
        "Change an institution",
        schemas.InstitutionIn,
        tag="admin",
    ),
    Route("GET", A + "/agreements", list_agreements, "Agreements", tag="admin"),
    Route(
        "POST",
        A + "/agreements",
        add_agreement,
        "Add an agreement",
        schemas.AgreementIn,
        201,
        tag="admin",
    ),
    Route(
        "POST", A + "/agreements/{agreement_id}/end", end_agreement, "End an agreement", tag="admin"
    ),
    Route("GET", A + "/departments", list_departments, "Departments", tag="admin"),
    Route(
        "POST",
        A + "/departments",
        add_department,
        "Add a department",
        schemas.DepartmentIn,
        201,
        tag="admin",
    ),
    Route(
        "PUT",
        A + "/departments/{department_id}",
        edit_department,
        "Rename a department",
        schemas.DepartmentEditIn,
        tag="admin",
    ),
    Route(
        "GET",
        A + "/accounts",
        list_accounts,
        "Accounts",
        tag="admin",
        query=(
            ("institution_id", STRING),
            ("role", STRING),
            ("active", {"type": "string", "enum": ["true", "false"]}),
            ("q", STRING),
        ),
    ),
    Route(
        "POST",
        A + "/accounts",
        add_account,
        "Create an account",
        schemas.AccountIn,
        201,
        tag="admin",
    ),
    Route(
        "PUT",
        A + "/accounts/{account_id}",
        edit_account,
        "Change an account",
        schemas.AccountEditIn,
        tag="admin",
    ),
    Route(
        "POST",
        A + "/accounts/{account_id}/deactivate",
        deactivate_account,
        "Deactivate an account",
        tag="admin",
    ),
    Route(
        "POST",
        A + "/accounts/{account_id}/reactivate",
        reactivate_account,
        "Reactivate an account",
        tag="admin",
    ),
    Route(
        "POST",
        A + "/accounts/{account_id}/reset-password",
        reset_password,
        "Reset a password",
        tag="admin",
    ),
    Route(
        "POST",
        A + "/import/preview",
        import_preview,
        "Check a staff list",
        tag="admin",
        raw_body=FILE_BODY,
    ),
    Route(
        "POST",
        A + "/import",
        import_commit,
        "Import a staff list",
        status=201,
        tag="admin",
        raw_body=FILE_BODY,
    ),
)
