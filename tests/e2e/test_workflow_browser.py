"""The consultation workflow in two real browsers through the real server.

A clinic doctor registers a patient, records consent and requests a cardiology
consultation; the cardiologist, whose queue is already open, sees it appear
without reloading and accepts it; the clinic's page shows "accepted" without
reloading either. Both pages must load without console errors or CSP violations.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from records.demo import demo_national_id

from ..scenario import Scenario

pytestmark = pytest.mark.browser

# Set after the first load; still there at the end means the page never reloaded.
MARK = "window.__noReload = true"
STILL_MARKED = "window.__noReload === true"


async def test_request_appears_live_and_acceptance_comes_back(open_as: Any) -> None:
    _, clinic, clinic_problems = await open_as("clinic1")  # default language: zh_CN
    _, specialist, specialist_problems = await open_as("cardio1", locale="en")
    assert clinic.url.endswith("/clinic")
    assert specialist.url.endswith("/queue")
    for page in (clinic, specialist):
        await page.evaluate(MARK)
        await page.locator('#push-status[data-status="online"]').wait_for()

    # Register a patient; the consent dialog follows.
    await clinic.click("#register-open")
    await clinic.fill("#pt-name", "周测试")
    await clinic.check('#register-form input[name="sex"][value="female"]')
    await clinic.fill("#pt-birth", "1970-05-06")
    await clinic.fill("#pt-nid", demo_national_id("360101", date(1970, 5, 6), 77))
    await clinic.click('#register-form button[type="submit"]')
    consent = clinic.locator("#consent-dialog")
    await consent.wait_for()
    assert await clinic.input_value("#cs-given-by") == "周测试"
    await clinic.select_option("#cs-relationship", "self")
    await clinic.check('#consent-form input[name="scope_recording"]')
    await clinic.click('#consent-form button[type="submit"]')
    await consent.wait_for(state="hidden")
    row = clinic.locator("#patients-body tr", has_text="周测试")
    await row.locator(".tag-ok").wait_for()

    # Request a cardiology consultation for that patient.
    patient_id = await row.get_attribute("data-patient-id")
    assert await clinic.input_value("#rq-patient") == patient_id
    await clinic.select_option("#rq-department", label="心血管内科")
    await clinic.locator("#rq-specialist:not([disabled])").wait_for()
    await clinic.check('#rq-urgency input[value="urgent"]', force=True)
    await clinic.fill("#rq-reason", "胸痛 2 小时，心电图 ST 段抬高")
    await clinic.fill("#rq-question", "是否需要立即转诊行介入治疗？")
    await clinic.click('#request-form button[type="submit"]')
    mine = clinic.locator("#requests-list li", has_text="胸痛 2 小时")
    await mine.wait_for()
    consultation_id = await mine.get_attribute("data-consultation-id")
    assert consultation_id
    badge = clinic.locator(
        f'#requests-list li[data-consultation-id="{consultation_id}"] .badge-state'
    )
    assert await badge.get_attribute("data-state") == "requested"
    assert await badge.text_content() == "已申请"

    # The specialist's open queue shows it by itself, and they accept it.
    item = specialist.locator(f'#queue-list li[data-consultation-id="{consultation_id}"]')
    await item.wait_for()
    assert await item.locator(".badge-urgency").text_content() == "Urgent"
    assert "Female" in (await item.text_content() or "")
    await item.locator('button[data-action="accept"]').click()
    await item.wait_for(state="detached")
    await specialist.locator(
        f'#mine-list li[data-consultation-id="{consultation_id}"] '
        '.badge-state[data-state="accepted"]'
    ).wait_for()

    # Back at the clinic, the badge turns to "accepted" by server push.
    accepted = clinic.locator(
        f'#requests-list li[data-consultation-id="{consultation_id}"] '
        '.badge-state[data-state="accepted"]'
    )
    await accepted.wait_for()
    assert await accepted.text_content() == "已接受"

    for page, problems in ((clinic, clinic_problems), (specialist, specialist_problems)):
        assert await page.evaluate(STILL_MARKED), "the page reloaded"
        assert await problems.collect(page) == []


async def test_wrong_password_is_explained(open_as: Any) -> None:
    _, page, problems = await open_as(None)
    await page.fill("#username", "clinic2")
    await page.fill("#password", "not-the-password")
    await page.click("#login-submit")
    error = page.locator('#login-error[data-code="login_failed"]')
    await error.wait_for()
    assert await error.text_content() == "用户名或密码错误。"
    assert await page.input_value("#password") == ""
    # The browser itself logs the 401 as a console error; what matters is that no
    # script failed and nothing broke the CSP.
    assert problems.page_errors == []
    await problems.collect(page)
    assert problems.csp_violations == []


async def test_locked_account_is_explained(open_as: Any, settings: Any) -> None:
    _, page, problems = await open_as(None)
    error = page.locator("#login-error")
    for attempt in range(settings.login_max_failures):
        await page.fill("#username", "clinic2")
        await page.fill("#password", f"wrong-{attempt}")
        await page.click("#login-submit")
        await page.locator(f'#login-error[data-attempt="{attempt + 1}"]').wait_for()
    await page.fill("#username", "clinic2")
    await page.fill("#password", "demo1234")
    await page.click("#login-submit")
    await page.locator('#login-error[data-code="account_locked"]').wait_for(timeout=5000)
    assert "锁定" in (await error.text_content() or "")
    assert problems.page_errors == []


async def test_junior_specialist_is_told_why_accept_fails(open_as: Any, scenario: Scenario) -> None:
    await scenario.consultation(reason="Palpitations", question="Holter needed?")
    _, junior, problems = await open_as("cardio_junior", locale="en")
    await junior.locator("#practice-notice").wait_for()
    item = junior.locator("#queue-list li", has_text="Palpitations")
    await item.locator('button[data-action="accept"]').click()
    message = item.locator(".item-error")
    await message.wait_for()
    assert "at least 3 years" in (await message.text_content() or "")
    assert problems.page_errors == []


async def test_coordinator_assigns_to_an_eligible_specialist(
    open_as: Any, scenario: Scenario
) -> None:
    _, coordinator, problems = await open_as("coord1", locale="en")
    await coordinator.evaluate(MARK)
    await coordinator.locator('#push-status[data-status="online"]').wait_for()
    made = await scenario.consultation(
        urgency="emergency", reason="Syncope", question="Transfer now?"
    )
    consultation_id = made.id

    item = coordinator.locator(f'#waiting-list li[data-consultation-id="{consultation_id}"]')
    await item.wait_for()
    select = item.locator("select")
    # The under-3-years cardiologist is listed but cannot be chosen.
    assert await select.locator('option[data-eligible="false"]').count() >= 1
    assert await select.locator('option[data-eligible="false"]:not([disabled])').count() == 0
    eligible = select.locator('option[data-eligible="true"]').first
    await select.select_option(await eligible.get_attribute("value"))
    await item.locator('button[type="submit"]').click()
    await item.wait_for(state="detached")
    active = coordinator.locator(
        f'#active-list li[data-consultation-id="{consultation_id}"] '
        '.badge-state[data-state="accepted"]'
    )
    await active.wait_for()
    assert await active.text_content() == "Accepted"
    assert await coordinator.evaluate(STILL_MARKED)
    assert await problems.collect(coordinator) == []


async def test_a_push_while_the_coordinator_chooses_keeps_the_choice(
    open_as: Any, scenario: Scenario
) -> None:
    # Seen under load in CI: a pushed change re-rendered the waiting list between
    # choosing a specialist and pressing "assign", and the assignment was lost.
    _, coordinator, problems = await open_as("coord1", locale="en")
    await coordinator.locator('#push-status[data-status="online"]').wait_for()
    first = await scenario.consultation(urgency="urgent", reason="Chest pain", question="?")
    item = coordinator.locator(f'#waiting-list li[data-consultation-id="{first.id}"]')
    select = item.locator("select")
    await select.locator('option[data-eligible="true"]').first.wait_for(state="attached")
    chosen = await select.locator('option[data-eligible="true"]').first.get_attribute("value")
    await select.select_option(chosen)
    # Another request arrives: the push re-renders the list under the coordinator.
    second = await scenario.consultation(urgency="routine", reason="Rash", question="?")
    await coordinator.locator(f'#waiting-list li[data-consultation-id="{second.id}"]').wait_for()
    assert await select.input_value() == chosen
    await item.locator('button[type="submit"]').click()
    await item.wait_for(state="detached")
    assert await problems.collect(coordinator) == []
