"""Issue 14, the safety defect, as a doctor sees it: on the consultation page's
summary tab an entry the source withdrew is not shown (only counted), and an entry
that is not simply current says so in words. Screenshots in both languages at
phone and desktop width go to ``screenshots/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..scenario import Scenario
from ..web.test_summary_status import (
    _bundle,
    allergy,
    condition,
    glucose,
    immunization,
    medication,
    procedure,
    systolic,
)
from .test_screenshots import LOCALES, VIEWPORTS

pytestmark = pytest.mark.browser


def _with_id(resource: dict[str, Any], rid: str, **changes: Any) -> dict[str, Any]:
    return {**resource, "id": rid, **changes}


async def test_withdrawn_entries_are_counted_not_shown(
    open_as: Any, scenario: Scenario, screenshots_dir: Path
) -> None:
    made = await scenario.consultation(consent=("consultation",))
    diabetes = {
        "coding": [
            {"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9", "display": "2型糖尿病"}
        ]
    }
    bundle = _bundle(
        condition("confirmed"),  # I10, shown
        _with_id(condition("entered-in-error", None), "c2", code=diabetes),
        _with_id(
            condition("confirmed", "resolved"),
            "c3",
            code={
                "coding": [
                    {"system": "http://hl7.org/fhir/sid/icd-10", "code": "J18.9", "display": "肺炎"}
                ]
            },
        ),
        allergy("refuted"),  # penicillin, high criticality: never shown
        medication("MedicationStatement", "stopped"),
        _with_id(medication("MedicationRequest", "cancelled"), "m2"),
        glucose("cancelled"),  # 30 mmol/L: never shown, never flagged
        systolic("preliminary"),
        immunization("completed"),
        procedure("not-done"),
    )
    status, data = await made.clinic.post(f"/api/patients/{made.patient_id}/fhir", bundle)
    assert status == 200, data
    cid = made.json["id"]
    for locale in LOCALES:
        for vp_name, viewport in VIEWPORTS.items():
            context, page, problems = await open_as("clinic1", locale=locale, viewport=viewport)
            await page.goto(f"/consultations/{cid}")
            # As a doctor would: the page has shown the consultation. Once in a
            # fresh-clone CI run the summary never appeared; the response now
            # says whether the tab's click asked for it and what came back.
            await page.locator("#cons:not([aria-busy])").wait_for()
            async with page.expect_response(lambda r: r.url.endswith("/summary")) as asked:
                await page.click("#records-tab-summary")
            assert (await asked.value).status == 200
            box = page.locator("#records-summary")
            await box.locator('li[data-code="I10"]').wait_for()
            assert await box.locator('li[data-code="E11.9"]').count() == 0
            assert await box.locator('tr[data-code="1558-6"]').count() == 0
            assert await box.locator('[data-section="allergies"] li').count() == 0
            withdrawn = box.locator(".summary-withdrawn")
            # Diagnoses, allergies, medications, lab results and procedures each
            # withdrew one.
            assert await withdrawn.count() == 5
            resolved = box.locator('li[data-code="J18.9"] .status-tag')
            assert await resolved.get_attribute("data-status") == "resolved"
            assert await box.locator('tr[data-code="8480-6"] .status-tag').count() == 1
            assert await box.locator('[data-section="immunizations"] li').count() == 1
            assert await box.locator('[data-section="procedures"] li').count() == 0
            await page.locator("#records-summary").screenshot(
                path=str(screenshots_dir / f"summary-status-{locale}-{vp_name}.png")
            )
            assert await problems.collect(page) == []
            await context.close()
