"""Issue 14, part 3: the clinic imports a published FHIR file from its patient list,
sees it being sent, and reads what was and was not imported; screenshots of the
dialog in both languages at phone and desktop width go to ``screenshots/``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from web.settings import Settings

from ..conftest import make_settings
from ..scenario import Scenario
from ..web.test_fhir_fetch import FakeFhir
from .test_screenshots import LOCALES, VIEWPORTS

pytestmark = pytest.mark.browser

DATA = Path(__file__).parent.parent / "data" / "fhir"
# Watches the progress line, which on loopback may show for only a moment.
PROGRESS_SEEN = """
window.__fhirProgress = [];
new MutationObserver(() => {
  const text = document.getElementById("fhir-progress-text");
  if (text && text.textContent) window.__fhirProgress.push(text.textContent);
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


async def test_import_a_published_bundle_and_read_the_report(
    open_as: Any, scenario: Scenario, screenshots_dir: Path
) -> None:
    pid = await scenario.patient()
    bundle = DATA / "synthea-kathe-zieme.json"
    data = json.loads(bundle.read_text())
    conditions = sum(e["resource"]["resourceType"] == "Condition" for e in data["entry"])
    claims = sum(e["resource"]["resourceType"] == "Claim" for e in data["entry"])
    for locale in LOCALES:
        for vp_name, viewport in VIEWPORTS.items():
            context, page, problems = await open_as("clinic1", locale=locale, viewport=viewport)
            await context.add_init_script(PROGRESS_SEEN)
            await page.reload()
            row = page.locator(f'tr[data-patient-id="{pid}"]')
            await row.locator('[data-action="fhir-import"]').click()
            dialog = page.locator("#fhir-dialog")
            await dialog.wait_for(state="visible")
            await page.set_input_files("#fhir-file", str(bundle))
            await page.click("#fhir-submit")
            report = page.locator("#fhir-report")
            await report.wait_for(state="visible")
            # The first import creates the rows, later ones update them.
            counts = report.locator('.fhir-counts li[data-kind="conditions"] strong').first
            assert await counts.text_content() == str(conditions)
            claim_count = report.locator('.fhir-counts li[data-kind="Claim"] strong')
            assert await claim_count.text_content() == str(claims)
            assert await page.locator(".fhir-left-out").count() == 0
            progress = await page.evaluate("window.__fhirProgress")
            assert any("%" in line for line in progress), progress
            await dialog.screenshot(
                path=str(screenshots_dir / f"fhir-import-{locale}-{vp_name}.png")
            )
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0
            assert await problems.collect(page) == []
            await context.close()


async def test_a_file_that_is_not_fhir_says_why(
    open_as: Any, scenario: Scenario, tmp_path: Path
) -> None:
    pid = await scenario.patient()
    bad = tmp_path / "notes.json"
    bad.write_text(json.dumps({"resourceType": "Patient"}))
    context, page, _problems = await open_as("clinic1", locale="en")
    await page.locator(f'tr[data-patient-id="{pid}"] [data-action="fhir-import"]').click()
    await page.set_input_files("#fhir-file", str(bad))
    await page.click("#fhir-submit")
    error = page.locator("#fhir-error")
    await error.wait_for(state="visible")
    assert "send a FHIR Bundle" in (await error.text_content() or "")
    assert await page.locator("#fhir-report").is_hidden()
    await context.close()


@pytest.fixture
async def fake_fhir() -> AsyncIterator[FakeFhir]:
    fake = FakeFhir()
    app = web.Application()
    app.router.add_get("/fhir/Patient", fake.search)
    app.router.add_get("/fhir/Patient/{id}/$everything", fake.everything)
    fake.server = TestServer(app)
    await fake.server.start_server()
    yield fake
    await fake.server.close()


class TestFromTheServer:
    @pytest.fixture
    def settings(self, tmp_path: Path, demo_database: str, fake_fhir: FakeFhir) -> Settings:
        return make_settings(tmp_path, database_url=demo_database, fhir_server_url=fake_fhir.url())

    async def test_fetch_from_the_hospitals_server(
        self, open_as: Any, scenario: Scenario, fake_fhir: FakeFhir, screenshots_dir: Path
    ) -> None:
        pid = await scenario.patient()
        conditions = sum(
            e["resource"]["resourceType"] == "Condition" for e in fake_fhir.bundle["entry"]
        )
        for locale in LOCALES:
            for vp_name, viewport in VIEWPORTS.items():
                context, page, problems = await open_as("clinic1", locale=locale, viewport=viewport)
                await page.locator(
                    f'tr[data-patient-id="{pid}"] [data-action="fhir-import"]'
                ).click()
                await page.click("#fhir-fetch-submit")
                report = page.locator("#fhir-report")
                await report.wait_for(state="visible")
                count = report.locator('.fhir-counts li[data-kind="conditions"] strong').first
                assert await count.text_content() == str(conditions)
                await page.locator("#fhir-dialog").screenshot(
                    path=str(screenshots_dir / f"fhir-fetch-{locale}-{vp_name}.png")
                )
                assert await problems.collect(page) == []
                await context.close()
        assert len(fake_fhir.searched) == 4
