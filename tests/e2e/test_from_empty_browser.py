"""From an empty database to a first real consultation, through the pages alone.

A fresh install: no demo data. The first administrator is made by the command
line's bootstrap (``teleconsult admin bootstrap``, in its own process); from
then on everything is done in Chromium as people would: the administrator
signs in (and must replace the temporary password), adds a township clinic and a
specialist hospital, an agreement between them and a cardiology department, and
imports the two doctors from an XLSX staff list. The clinic doctor signs in,
registers a patient with consent and asks cardiology; the specialist accepts;
both join the call (video flowing both ways); the specialist signs the opinion
and the clinic downloads the report, which holds the opinion and the patient's
masked ID.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from aiohttp import web
from openpyxl import Workbook
from pypdf import PdfReader

from records.demo import demo_national_id
from records.schema import sessions
from web.keys import DB
from web.settings import Settings

from ..conftest import make_settings
from ..web.test_cli import ROOT, env_for
from .conftest import CSP_LISTENER, LOOPBACK_NETWORKS, NetNs, PageProblems, video_flowing, watch
from .test_call_browser import open_call
from .totp import enrol, verify_for_call

pytestmark = pytest.mark.browser

CLINIC = "城关镇卫生院"
HOSPITAL = "省人民医院"
STAFF = (
    ("用户名", "姓名", "角色", "机构", "科室", "职称", "执业证书编号", "执业起始日期", "电话"),
    ("wangjg", "王建国", "基层医生", CLINIC, None, "执业医师", "110420110000001",
     date(2011, 7, 1), "13800000011"),
    ("zhangw", "张伟", "专科医生", HOSPITAL, "cardiology", "主任医师", "110420040000002",
     date(2004, 9, 1), "13800000012"),
)  # fmt: skip
PASSWORDS = {"admin": "admin-chosen-1", "wangjg": "clinic-chosen-1", "zhangw": "cardio-chosen-1"}
NID = demo_national_id("360101", date(1958, 4, 9), 31)
IMPRESSION = "急性下壁心肌梗死可能"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A fresh data directory: the database does not exist until the server starts."""
    return make_settings(
        tmp_path,
        ice_allowed_networks=LOOPBACK_NETWORKS,
        # The product's rule: physicians give a second factor at sign-in, and
        # again before joining a call once the last check is older than the window.
        totp_roles=("clinic_doctor", "specialist"),
    )


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


async def bootstrap(data_dir: Path) -> str:
    """``teleconsult admin bootstrap`` in its own process; the temporary password."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "web.cli",
        "admin",
        "bootstrap",
        "--username",
        "admin",
        "--name",
        "信息科管理员",
        "--institution",
        "青山县人民医院",
        "--kind",
        "county_hospital",
        "--region",
        "青山县",
        cwd=ROOT,
        env=env_for(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, (out + err).decode()
    found = re.search(r"temporary password \(shown once\): (\S+)", out.decode())
    assert found, out.decode()
    return found.group(1)


def staff_xlsx(path: Path) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in STAFF:
        sheet.append(list(row))
    buf = io.BytesIO()
    book.save(buf)
    path.write_bytes(buf.getvalue())
    return path


async def first_sign_in(
    browser: Any, live_server: str, username: str, temporary: str, *, locale: str = "zh_CN"
) -> tuple[Any, PageProblems, str | None]:
    """Sign in with a temporary password, enrol an authenticator if the role needs
    one (the secret, else None), and choose one's own password, as the pages insist."""
    context = await browser.new_context(
        base_url=live_server, viewport={"width": 1280, "height": 900}, locale="zh-CN"
    )
    await context.add_init_script(CSP_LISTENER)
    await context.add_cookies([{"name": "tc_lang", "value": locale, "url": live_server}])
    page = await context.new_page()
    problems = watch(page)
    await page.goto("/login")
    await page.fill("#username", username)
    await page.fill("#password", temporary)
    await page.click("#login-submit")
    await page.wait_for_url(lambda url: urlsplit(url).path in ("/password", "/login/second-factor"))
    secret = None
    if urlsplit(page.url).path == "/login/second-factor":
        # Real-name verification: the physician enrols the phone by its QR code.
        await page.locator("#totp-qr svg").wait_for()
        secret = await enrol(page)
    await page.wait_for_url(lambda url: urlsplit(url).path == "/password")
    await page.locator("#password-forced").wait_for()
    await page.fill("#current-password", temporary)
    await page.fill("#new-password", PASSWORDS[username])
    await page.fill("#repeat-password", PASSWORDS[username])
    await page.click("#password-submit")
    await page.wait_for_url(lambda url: not url.endswith("/password"))
    return page, problems, secret


async def add_institution(admin: Any, name: str, kind: str, region: str) -> None:
    await admin.fill("#in-name", name)
    await admin.select_option("#in-kind", kind)
    await admin.fill("#in-region", region)
    await admin.click('#institution-form button[type="submit"]')
    await admin.locator("#institutions-body tr", has_text=name).wait_for()


async def checks_made_long_ago(app: web.Application, settings: Settings) -> None:
    """Every sign-in check older than the window (as a morning's pause before the call)."""
    old = datetime.now(UTC) - timedelta(seconds=settings.reverify_window_seconds + 60)

    def work(conn: sa.Connection) -> None:
        conn.execute(
            sessions.update().where(sessions.c.verified_at.is_not(None)).values(verified_at=old)
        )

    await app[DB].run_write(work)


async def test_from_an_empty_install_to_a_signed_report(
    browser: Any, live_app: tuple[web.Application, str], settings: Settings, tmp_path: Path
) -> None:
    app, live_server = live_app
    temporary = await bootstrap(settings.data_dir)

    # -- the administrator, through the admin pages only
    admin, admin_problems, admin_secret = await first_sign_in(
        browser, live_server, "admin", temporary
    )
    assert admin_secret is None  # administrators are not asked (totp_roles)
    assert admin.url.endswith("/admin")
    await admin.locator("#institutions-body tr", has_text="青山县人民医院").wait_for()
    await add_institution(admin, CLINIC, "township_clinic", "青山县")
    await add_institution(admin, HOSPITAL, "specialist_hospital", "省会市")

    await admin.select_option("#ag-requesting", label=CLINIC)
    await admin.select_option("#ag-consulting", label=HOSPITAL)
    await admin.select_option("#ag-kind", "medical_alliance")
    await admin.click('#agreement-form button[type="submit"]')
    await admin.locator('#agreements-body tr[data-active="true"]', has_text=CLINIC).wait_for()

    await admin.select_option("#de-institution", label=HOSPITAL)
    await admin.fill("#de-code", "cardiology")
    await admin.fill("#de-name", "心血管内科")
    await admin.click('#department-form button[type="submit"]')
    await admin.locator("#departments-body tr", has_text="心血管内科").wait_for()

    await admin.set_input_files("#im-file", str(staff_xlsx(tmp_path / "staff.xlsx")))
    await admin.click("#import-check")
    await admin.locator("#import-commit:not([disabled])").wait_for()
    assert await admin.locator("#import-rows tr").count() == 2
    assert await admin.locator("#import-rows td.cell-bad").count() == 0
    await admin.click("#import-commit")
    created = admin.locator("#created-body tr")
    await created.first.wait_for()
    issued = {
        (await row.get_attribute("data-username") or ""): (
            await row.locator(".secret-cell").text_content() or ""
        )
        for row in await created.all()
    }
    assert set(issued) == {"wangjg", "zhangw"}
    await admin.locator('#accounts-body tr[data-username="zhangw"]').wait_for()
    assert await admin_problems.collect(admin) == []

    # -- the clinic doctor: first sign-in, then patient, consent and request
    clinic, clinic_problems, clinic_secret = await first_sign_in(
        browser, live_server, "wangjg", issued["wangjg"]
    )
    assert clinic_secret is not None
    assert clinic.url.endswith("/clinic")
    await clinic.click("#register-open")
    await clinic.fill("#pt-name", "赵大伯")
    await clinic.check('#register-form input[name="sex"][value="male"]')
    await clinic.fill("#pt-birth", "1958-04-09")
    await clinic.fill("#pt-nid", NID)
    await clinic.click('#register-form button[type="submit"]')
    consent = clinic.locator("#consent-dialog")
    await consent.wait_for()
    await clinic.select_option("#cs-relationship", "self")
    await clinic.click('#consent-form button[type="submit"]')
    await consent.wait_for(state="hidden")
    row = clinic.locator("#patients-body tr", has_text="赵大伯")
    await row.locator(".tag-ok").wait_for()
    await clinic.select_option("#rq-department", label="心血管内科")
    await clinic.locator("#rq-specialist:not([disabled])").wait_for()
    await clinic.check('#rq-urgency input[value="urgent"]', force=True)
    await clinic.fill("#rq-reason", "胸痛 3 小时，心电图 II、III、aVF 导联 ST 段抬高")
    await clinic.fill("#rq-question", "是否需要立即转诊行介入治疗？")
    await clinic.click('#request-form button[type="submit"]')
    mine = clinic.locator("#requests-list li", has_text="胸痛 3 小时")
    await mine.wait_for()
    cid = await mine.get_attribute("data-consultation-id")
    assert cid

    # -- the specialist: first sign-in, accept from the queue
    cardio, cardio_problems, cardio_secret = await first_sign_in(
        browser, live_server, "zhangw", issued["zhangw"]
    )
    assert cardio_secret is not None
    assert cardio.url.endswith("/queue")
    item = cardio.locator(f'#queue-list li[data-consultation-id="{cid}"]')
    await item.locator('button[data-action="accept"]').click()
    await cardio.locator(
        f'#mine-list li[data-consultation-id="{cid}"] .badge-state[data-state="accepted"]'
    ).wait_for()

    # -- the call, both ways
    # Each doctor confirms who they are before the call takes them in.
    await checks_made_long_ago(app, settings)
    await open_call(clinic, "#requests-list", cid)
    await verify_for_call(clinic, clinic_secret)
    await open_call(cardio, "#mine-list", cid)
    await verify_for_call(cardio, cardio_secret)
    for page in (clinic, cardio):
        await video_flowing(page, 1, label="from-empty")
    timeline = await (await clinic.request.get(f"/api/consultations/{cid}/timeline")).json()
    verified = [e for e in timeline["events"] if e["kind"] == "identity_verified"]
    assert len(verified) == 2  # one check per doctor, on the consultation's record
    tile = cardio.locator("#tiles .tile-remote")
    assert "王建国" in (await tile.locator(".tile-name").text_content() or "")

    # -- the opinion, signed
    await cardio.click("#ctl-end")
    await cardio.click('#end-dialog button[value="end"]')
    write = cardio.locator("#write-opinion")
    await write.wait_for()
    await write.click()
    await cardio.wait_for_url(f"**/consultations/{cid}")
    await cardio.locator('#opinion-card[data-mode="write"]').wait_for()
    await cardio.fill("#op-findings", "心电图示下壁导联 ST 段抬高，肌钙蛋白待回报。")
    await cardio.fill("#op-impression", IMPRESSION)
    await cardio.fill("#op-recommendations", "立即嚼服阿司匹林 300 mg，联系转运行急诊 PCI。")
    await cardio.click("#opinion-submit")
    await cardio.locator("#sign-dialog").wait_for()
    await cardio.click("#sign-confirm")
    await cardio.locator('#signed article[data-kind="opinion"]').wait_for()

    # -- the clinic prints the report
    await clinic.goto(f"/consultations/{cid}")
    link = clinic.locator("#report-link")
    await link.wait_for(state="visible")
    async with clinic.expect_download() as info:
        await link.click()
    download = await info.value
    pdf = Path(await download.path()).read_bytes()  # noqa: ASYNC240 - a small local file
    text = "".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages)
    compact = re.sub(r"\s+", "", text)
    assert IMPRESSION in compact
    masked = NID[:4] + "*" * (len(NID) - 6) + NID[-2:]
    assert masked in compact

    for page, problems in (
        (admin, admin_problems),
        (clinic, clinic_problems),
        (cardio, cardio_problems),
    ):
        assert await problems.collect(page) == [], page.url
