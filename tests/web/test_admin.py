"""Administration through the API: the directory, accounts, agreements, imports.

Every action is an administrator's, is refused to everyone else, and is in the
audit log; a deactivated person is signed out at once (their socket closes within
a second) and keeps their name in the history; a request to a hospital outside
the clinic's agreements is refused naming ``department_id``.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import WSMsgType, web
from openpyxl import Workbook

from records.schema import accounts, audit_log
from web.keys import DB

from ..conftest import LoginAs
from ..patience import patient
from ..scenario import REQUEST, Scenario
from .calls import connect

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "staff_sample.csv"
NEW_PASSWORD = "qingshan-2026"  # noqa: S105 - a test password


async def audit_actions(app: web.Application, actor_id: str | None = None) -> list[dict[str, Any]]:
    async with app[DB].read() as conn:
        query = sa.select(audit_log).order_by(audit_log.c.seq)
        if actor_id is not None:
            query = query.where(audit_log.c.actor_id == actor_id)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def account_count(app: web.Application) -> int:
    async with app[DB].read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(accounts))).scalar())


async def upload(user: Any, path: str, data: bytes) -> tuple[int, Any]:
    resp = await user.client.post(
        path,
        data=data,
        headers={"X-CSRF-Token": user.csrf, "Content-Type": "application/octet-stream"},
    )
    return resp.status, await resp.json()


async def ids(admin: Any) -> dict[str, str]:
    _, body = await admin.get("/api/admin/institutions")
    found = {i["name"]: i["id"] for i in body["institutions"]}
    _, body = await admin.get("/api/admin/departments")
    found |= {d["code"]: d["id"] for d in body["departments"]}
    return found


async def test_an_administrator_builds_the_directory_and_every_action_is_audited(
    login_as: LoginAs, app: web.Application
) -> None:
    admin = await login_as("admin1")
    known = await ids(admin)
    status, body = await admin.post(
        "/api/admin/institutions",
        {"name": "白沙乡卫生院", "kind": "township_clinic", "region": "青山县"},
    )
    assert status == 201, body
    clinic = body["institution"]["id"]
    status, body = await admin.post(
        "/api/admin/agreements",
        {
            "requesting_institution_id": clinic,
            "consulting_institution_id": known["省人民医院"],
            "kind": "paired_support",
        },
    )
    assert status == 201, body
    agreement = body["agreement"]
    assert agreement["active"] and agreement["kind"] == "paired_support"
    status, body = await admin.post(
        "/api/admin/departments",
        {"institution_id": known["省人民医院"], "code": "neurology", "name": "神经内科"},
    )
    assert status == 201, body
    neurology = body["department"]["id"]
    status, body = await admin.post(
        "/api/admin/accounts",
        {
            "username": "baisha1",
            "display_name": "杨帆",
            "role": "clinic_doctor",
            "institution_id": clinic,
            "title": "执业医师",
            "licence_no": "110420150000009",
            "practice_start": "2015-08-01",
            "phone": "13700000009",
        },
    )
    assert status == 201, body
    doctor_id = body["account"]["id"]
    temporary = body["temporary_password"]
    assert body["account"]["must_change_password"] is True
    assert "password_hash" not in body["account"]

    # The doctor's first sign-in opens the password change and nothing else.
    doctor = await login_as("baisha1", temporary)
    assert doctor.account["temporary_credentials"] is True
    status, body = await doctor.get("/api/patients")
    assert (status, body["error"]["code"]) == (403, "password_change_required")
    status, body = await doctor.post(
        "/api/session/password", {"current_password": temporary, "new_password": "short"}
    )
    assert (status, body["error"]["fields"]) == (400, ["new_password"])
    status, body = await doctor.post(
        "/api/session/password", {"current_password": temporary, "new_password": NEW_PASSWORD}
    )
    assert status == 200, body
    assert body["account"]["temporary_credentials"] is False
    status, body = await doctor.get("/api/patients")
    assert status == 200, body
    # The clinic is offered the hospital it has an agreement with, new department too.
    status, body = await doctor.get("/api/departments")
    assert neurology in {d["id"] for d in body["departments"]}

    status, body = (
        await admin.client.put(
            f"/api/admin/accounts/{doctor_id}",
            json={
                "display_name": "杨帆",
                "role": "clinic_doctor",
                "title": "主治医师",
                "licence_no": "110420150000009",
                "practice_start": "2015-08-01",
            },
            headers={"X-CSRF-Token": admin.csrf},
        ),
        None,
    )
    assert status.status == 200
    resp = await admin.client.put(
        f"/api/admin/institutions/{clinic}",
        json={"name": "白沙镇卫生院", "kind": "township_clinic", "region": "青山县"},
        headers={"X-CSRF-Token": admin.csrf},
    )
    assert resp.status == 200 and (await resp.json())["institution"]["name"] == "白沙镇卫生院"
    resp = await admin.client.put(
        f"/api/admin/departments/{neurology}",
        json={"name": "神经内科（卒中中心）"},
        headers={"X-CSRF-Token": admin.csrf},
    )
    assert resp.status == 200 and (await resp.json())["department"]["code"] == "neurology"
    status, body = await admin.post(f"/api/admin/accounts/{doctor_id}/reset-password")
    assert status == 200 and len(body["temporary_password"]) >= 12
    status, _ = await admin.post(f"/api/admin/accounts/{doctor_id}/deactivate")
    assert status == 200
    status, body = await admin.post(f"/api/admin/accounts/{doctor_id}/reactivate")
    assert status == 200 and body["account"]["active"] is True
    status, body = await admin.post(f"/api/admin/agreements/{agreement['id']}/end")
    assert status == 200 and body["agreement"]["active"] is False

    actions = [a["action"] for a in await audit_actions(app, admin.account["id"])]
    for action in (
        "admin.institution.add",
        "admin.institution.edit",
        "admin.agreement.add",
        "admin.department.add",
        "admin.department.edit",
        "admin.account.add",
        "admin.account.edit",
        "admin.account.reset_password",
        "admin.account.deactivate",
        "admin.account.reactivate",
        "admin.agreement.end",
    ):
        assert action in actions, action
    mine = [a["action"] for a in await audit_actions(app, doctor_id)]
    assert "auth.password_changed" in mine


async def test_nobody_but_an_administrator_may_administer(login_as: LoginAs) -> None:
    for username in ("clinic1", "coord1", "cardio1"):
        user = await login_as(username)
        status, body = await user.get("/api/admin/accounts")
        assert (status, body["error"]["code"]) == (403, "role_forbidden")
        status, body = await user.post(
            "/api/admin/institutions",
            {"name": "某卫生院", "kind": "township_clinic", "region": "青山县"},
        )
        assert status == 403


async def test_a_request_outside_the_clinics_agreements_is_refused(
    scenario: Scenario, login_as: LoginAs
) -> None:
    admin = await login_as("admin1")
    clinic = await scenario.user("clinic1")
    known = await ids(admin)
    _, body = await admin.get("/api/admin/agreements")
    [agreement] = [
        a
        for a in body["agreements"]
        if a["requesting_institution_id"] == clinic.account["institution"]["id"]
    ]
    status, _ = await admin.post(f"/api/admin/agreements/{agreement['id']}/end")
    assert status == 200

    _, patients = await clinic.get("/api/patients")
    status, body = await clinic.post(
        "/api/consultations",
        {
            "patient_id": patients["patients"][0]["id"],
            "department_id": known["cardiology"],
            "urgency": "routine",
            **REQUEST,
        },
    )
    assert status == 403
    assert body["error"]["code"] == "no_agreement"
    assert body["error"]["fields"] == ["department_id"]
    # The picker no longer offers that hospital's departments, and says why.
    _, body = await clinic.get("/api/departments")
    assert body["departments"] == []
    page = await (await clinic.client.get("/clinic")).text()
    assert 'id="rq-no-departments"' in page
    # Another clinic of the same community still may ask.
    other = await scenario.user("clinic2")
    _, body = await other.get("/api/departments")
    assert known["cardiology"] in {d["id"] for d in body["departments"]}


async def test_deactivation_closes_the_open_socket_within_a_second_and_keeps_the_name(
    scenario: Scenario, login_as: LoginAs
) -> None:
    c = await scenario.consultation("requested")
    clinic = c.clinic
    sock = await connect(clinic)
    admin = await login_as("admin1")

    status, body = await admin.post(f"/api/admin/accounts/{clinic.account['id']}/deactivate")
    assert status == 200, body
    frame = await asyncio.wait_for(sock.ws.receive(), timeout=patient(1.0))
    assert frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)

    status, body = await clinic.get("/api/session")
    assert status == 401
    resp = await admin.client.post(
        "/api/session", json={"username": clinic.username, "password": "demo1234"}
    )
    assert resp.status == 401
    # History keeps the name: the specialist's timeline names who requested.
    specialist = await scenario.user("cardio1")
    status, body = await specialist.get(f"{c.url}/timeline")
    assert status == 200, body
    assert clinic.account["display_name"] in str(body)
    _, body = await admin.get("/api/admin/accounts?active=false")
    assert [a["username"] for a in body["accounts"]] == [clinic.username]


async def test_a_staff_list_with_any_bad_row_stores_nothing_and_names_each_cell(
    login_as: LoginAs, app: web.Application
) -> None:
    admin = await login_as("admin1")
    bad = (
        "username,display_name,role,institution,departments,title,licence_no,practice_start\n"
        "hekou_li,李春梅,clinic_doctor,河口镇卫生院,,执业医师,110420100000001,2012-07-01\n"
        "hekou_li,李春梅,clinic_doctor,河口镇卫生院,,执业医师,11042,2012/07/01\n"
        "cardio1,张三,surgeon,不存在医院,,,,\n"
        "x_new,王五,specialist,省人民医院,surgery,,110420100000004,2030-01-01\n"
    ).encode()
    before = await account_count(app)
    status, body = await upload(admin, "/api/admin/import/preview", bad)
    assert status == 200, body
    assert body["ok"] is False
    cells = {(p["row"], p["column"], p["code"]) for p in body["problems"]}
    assert (3, "username", "duplicate_in_file") in cells
    assert (3, "licence_no", "bad_licence") in cells
    assert (3, "practice_start", "bad_date") in cells
    assert (4, "username", "username_taken") in cells
    assert (4, "role", "unknown_role") in cells
    assert (4, "institution", "unknown_institution") in cells
    assert (5, "departments", "unknown_department") in cells
    assert (5, "practice_start", "bad_date") in cells  # in the future
    assert [r["row"] for r in body["rows"]] == [2]

    status, body = await upload(admin, "/api/admin/import", bad)
    assert status == 422
    assert body["error"]["code"] == "import_invalid"
    assert "row 3: licence_no" in body["error"]["fields"]
    assert await account_count(app) == before

    good = SAMPLE.read_bytes()
    status, body = await upload(admin, "/api/admin/import/preview", good)
    assert status == 200 and body["ok"] is True, body
    assert await account_count(app) == before
    status, body = await upload(admin, "/api/admin/import", good)
    assert status == 201, body
    created = {c["account"]["username"]: c for c in body["created"]}
    assert set(created) == {"hekou_li", "cardio_wang"}
    assert await account_count(app) == before + 2
    specialist = await login_as("cardio_wang", created["cardio_wang"]["temporary_password"])
    assert specialist.account["temporary_credentials"] is True
    actions = [a["action"] for a in await audit_actions(app, admin.account["id"])]
    assert actions.count("admin.import.preview") == 2
    assert actions.count("admin.import.commit") == 1


async def test_an_xlsx_staff_list_reads_like_the_csv(login_as: LoginAs) -> None:
    admin = await login_as("admin1")
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        sheet.append(line.split(","))
    buf = io.BytesIO()
    book.save(buf)
    status, body = await upload(admin, "/api/admin/import/preview", buf.getvalue())
    assert status == 200, body
    assert body["ok"] is True, body["problems"]
    assert [(r["username"], r["departments"]) for r in body["rows"]] == [
        ("hekou_li", []),
        ("cardio_wang", ["cardiology"]),
    ]


async def test_the_admin_page_is_the_administrators_home(login_as: LoginAs) -> None:
    admin = await login_as("admin1")
    resp = await admin.client.get("/", allow_redirects=False)
    assert resp.headers["Location"] == "/admin"
    resp = await admin.client.get("/admin")
    assert resp.status == 200
    assert "admin.js" in await resp.text()
    clinic = await login_as("clinic1")
    resp = await clinic.client.get("/admin", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"


async def test_a_temporary_password_leads_every_page_to_the_password_change(
    login_as: LoginAs,
) -> None:
    admin = await login_as("admin1")
    _, body = await admin.get("/api/admin/accounts?q=clinic2")
    [clinic2] = body["accounts"]
    _, body = await admin.post(f"/api/admin/accounts/{clinic2['id']}/reset-password")
    doctor = await login_as("clinic2", body["temporary_password"])
    resp = await doctor.client.get("/clinic", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/password"
    resp = await doctor.client.get("/password")
    assert resp.status == 200
