"""The supervision export page in Chromium: the range, the count, the signed download,
and screenshots in both languages at phone and desktop width."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from records import supervision, supervision_archive

from ..scenario import Scenario
from .test_screenshots import shoot

pytestmark = pytest.mark.browser

VIEWPORTS = {"390": {"width": 390, "height": 844}, "1280": {"width": 1280, "height": 900}}


async def test_export_page(
    open_as: Any, scenario: Scenario, screenshots_dir: Path, tmp_path: Path
) -> None:
    # The live app runs on the system clock: today's requests, in Beijing's today.
    today = datetime.now(UTC).astimezone(supervision.BEIJING).date().isoformat()
    await scenario.consultation("signed")
    await scenario.consultation("requested", department="respiratory", urgency="urgent")

    for locale in ("zh_CN", "en"):
        for vp_name, viewport in VIEWPORTS.items():
            context, page, problems = await open_as("coord1", locale=locale, viewport=viewport)
            await page.goto("/supervision")
            await page.fill("#sv-from", today)
            await page.fill("#sv-to", today)
            await page.click("#range button[type=submit]")
            await page.wait_for_url(f"**/supervision?from={today}&to={today}")
            assert await page.text_content("#sv-count") == "2"
            path = screenshots_dir / f"supervision-{locale}-{vp_name}.png"
            await shoot(page, problems, path, "#sv-zip")
            if locale == "zh_CN" and vp_name == "1280":
                assert await page.text_content("h1") == "监管数据导出"
                async with page.expect_download() as info:
                    await page.click("#sv-zip")
                download = await info.value
                saved = tmp_path / download.suggested_filename
                await download.save_as(saved)
                assert saved.name == f"supervision-{today}-{today}.zip"
                result = supervision_archive.verify_zip(saved.read_bytes())
                assert result.ok, result.problems
                assert result.count == 2
                # A range the wrong way round is refused on the page, naming the end date.
                await page.goto(f"/supervision?from={today}&to=2000-01-01")
                assert await page.get_attribute("#sv-to", "aria-invalid") == "true"
                await page.locator("#sv-error").wait_for()
                await page.screenshot(path=str(screenshots_dir / "supervision-error-zh_CN.png"))
            await context.close()
