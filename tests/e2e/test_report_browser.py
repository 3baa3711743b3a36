"""The report in the browser: the consultation page offers it once signed, and the
page its QR code opens says whether the paper matches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser


async def test_download_the_report_and_verify_it(open_as: Any, scenario: Any) -> None:
    c = await scenario.consultation("signed")
    _, clinic, problems = await open_as("clinic1")
    await clinic.goto(f"/consultations/{c.id}")
    link = clinic.locator("#report-link")
    await link.wait_for(state="visible")
    assert (await link.text_content() or "").strip() == "会诊报告单（PDF）"
    async with clinic.expect_download() as info:
        await link.click()
    download = await info.value
    assert download.suggested_filename == f"consultation-report-{c.id}.pdf"
    pdf = Path(await download.path()).read_bytes()  # noqa: ASYNC240 - a small local file
    assert pdf.startswith(b"%PDF-")
    resp = await clinic.request.get(f"/api/consultations/{c.id}/report.pdf")
    digest = resp.headers["x-report-sha256"]

    await clinic.goto(f"/reports/verify/{c.id}?sha256={digest}")
    box = clinic.locator('#verify[data-status="current"]')
    await box.wait_for()
    assert "报告一致" in (await clinic.locator("#verify-verdict").text_content() or "")
    assert await clinic.locator("#verify-signed article").count() == 1
    await clinic.goto(f"/reports/verify/{c.id}?sha256={'0' * 64}")
    await clinic.locator('#verify[data-status="mismatch"]').wait_for()
    assert await problems.collect(clinic) == []


async def test_no_report_link_before_the_signature(open_as: Any, scenario: Any) -> None:
    c = await scenario.consultation("ended")
    _, clinic, problems = await open_as("clinic1")
    await clinic.goto(f"/consultations/{c.id}")
    await clinic.locator('#opinion-card[data-mode="wait"]').wait_for()
    assert await clinic.locator("#report-link").is_hidden()
    assert await problems.collect(clinic) == []
