"""The administration page in Chromium: a staff list with bad rows is shown with
each bad cell marked and cannot be imported; an account is created with a
temporary password shown once; deactivation takes effect at once. Screenshots of
the page (and of the password change) in both languages, phone and desktop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .test_screenshots import LOCALES, shoot

pytestmark = pytest.mark.browser

VIEWPORTS = {"390": {"width": 390, "height": 844}, "1280": {"width": 1280, "height": 900}}
BAD_LIST = (
    "username,display_name,role,institution,departments,title,licence_no,practice_start\n"
    "hekou_li,李春梅,clinic_doctor,河口镇卫生院,,执业医师,110420100000001,2012-07-01\n"
    "hekou_li,李春梅,clinic_doctor,河口镇卫生院,,执业医师,11042,2012/07/01\n"
    "x_new,王五,surgeon,不存在医院,,,,\n"
)


async def test_bad_rows_are_marked_and_nothing_is_imported(
    open_as: Any, tmp_path: Path, screenshots_dir: Path
) -> None:
    staff = tmp_path / "staff.csv"
    staff.write_text(BAD_LIST, encoding="utf-8")
    for locale in LOCALES:
        for vp_name, viewport in VIEWPORTS.items():
            context, page, problems = await open_as("admin1", locale=locale, viewport=viewport)
            assert page.url.endswith("/admin")
            await page.locator("#accounts-body tr").first.wait_for()
            await page.set_input_files("#im-file", str(staff))
            await page.click("#import-check")
            await page.locator("#import-rows tr.row-bad").first.wait_for()
            assert await page.locator("#import-commit").is_disabled()
            bad = page.locator("#import-rows tr[data-row='3'] td.cell-bad")
            assert {await c.get_attribute("data-column") for c in await bad.all()} == {
                "username",
                "licence_no",
                "practice_start",
            }
            assert await page.locator("#import-problems li[data-row='4']").count() >= 2
            # What the file holds is shown, the bad cell marked.
            assert (
                await page.locator(
                    "#import-rows tr[data-row='3'] td[data-column='licence_no']"
                ).text_content()
                == "11042"
            )
            await page.evaluate("window.scrollTo(0, 0)")
            await shoot(
                page, problems, screenshots_dir / f"admin-{locale}-{vp_name}.png", "#import-result"
            )
            await context.close()


async def test_create_and_deactivate_an_account(open_as: Any, screenshots_dir: Path) -> None:
    _, page, problems = await open_as("admin1", locale="en")
    await page.locator("#accounts-body tr").first.wait_for()
    await page.fill("#ac-username", "shiqiao2")
    await page.fill("#ac-name", "钱进")
    await page.select_option("#ac-role", "clinic_doctor")
    await page.select_option("#ac-institution", label="石桥乡卫生院")
    await page.fill("#ac-licence", "110420200000077")
    await page.fill("#ac-start", "2020-09-01")
    await page.click("#account-submit")
    dialog = page.locator("#password-dialog")
    await dialog.wait_for()
    secret = await page.locator("#password-dialog-secret").text_content() or ""
    assert len(secret) == 12
    await page.click('#password-dialog button[value="ok"]')
    row = page.locator('#accounts-body tr[data-username="shiqiao2"]')
    await row.wait_for()
    assert "Must choose a password" in (await row.text_content() or "")

    # The new doctor is sent to the password change, whatever page they open.
    _, doctor, doctor_problems = await open_as(None, locale="en")
    await doctor.fill("#username", "shiqiao2")
    await doctor.fill("#password", secret)
    await doctor.click("#login-submit")
    await doctor.wait_for_url("**/password")
    for locale in ("en", "zh_CN"):
        if locale != "en":
            await doctor.goto(f"/password?lang={locale}")
        for vp_name, viewport in VIEWPORTS.items():
            await doctor.set_viewport_size(viewport)
            await shoot(
                doctor,
                doctor_problems,
                screenshots_dir / f"password-{locale}-{vp_name}.png",
                "#password-forced",
            )
    await doctor.goto("/clinic")
    await doctor.wait_for_url("**/password")

    # A department is renamed; its code stays.
    dermatology = page.locator("#departments-body tr", has_text="dermatology")
    await dermatology.locator('button[data-action="edit"]').click()
    assert await page.locator("#de-code").is_disabled()
    await page.fill("#de-name", "皮肤性病科")
    await page.click("#department-submit")
    await page.locator("#departments-body tr", has_text="皮肤性病科").wait_for()
    assert await page.locator("#de-code").is_enabled()

    page.on("dialog", lambda d: d.accept())
    await row.locator('button[data-action="deactivate"]').click()
    await page.locator(
        '#accounts-body tr[data-username="shiqiao2"] button[data-action="reactivate"]'
    ).wait_for()
    # Signed out at once: the next request is sent to the login page.
    await doctor.goto("/password")
    await doctor.wait_for_url("**/login**")

    # The agreement of 石桥乡卫生院 ends: its doctor is offered no hospital, and told why.
    agreement = page.locator('#agreements-body tr[data-active="true"]', has_text="石桥乡卫生院")
    await agreement.locator("button").click()
    await page.locator(
        '#agreements-body tr[data-active="false"]', has_text="石桥乡卫生院"
    ).wait_for()
    _, clinic, clinic_problems = await open_as("clinic3", locale="en")
    hint = clinic.locator("#rq-no-departments")
    await hint.wait_for()
    assert "no agreement" in (await hint.text_content() or "")
    assert await clinic.locator("#rq-department option").count() == 1  # "Choose…" only
    assert await problems.collect(page) == []
    assert await clinic_problems.collect(clinic) == []
