"""The consultation page labels every timeline event in the page's language.

It once showed the raw token ``reassigned`` for a consultation a coordinator had
moved to another specialist (the page's strings had no label for that kind).
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser


async def _post(context: Any, page: Any, path: str, data: dict[str, Any]) -> Any:
    csrf = await page.get_attribute('meta[name="csrf-token"]', "content")
    response = await context.request.post(path, headers={"X-CSRF-Token": csrf or ""}, data=data)
    assert response.ok, await response.text()
    return await response.json()


async def test_a_reassigned_consultation_shows_the_chinese_label(open_as: Any) -> None:
    clinic_ctx, clinic, problems = await open_as("clinic1")
    cardio_ctx, cardio, _ = await open_as("cardio1")
    coord_ctx, coord, _ = await open_as("coord1")
    patients = (await (await clinic_ctx.request.get("/api/patients")).json())["patients"]
    departments = (await (await clinic_ctx.request.get("/api/departments")).json())["departments"]
    cardiology = next(d["id"] for d in departments if d["code"] == "cardiology")
    created = await _post(
        clinic_ctx,
        clinic,
        "/api/consultations",
        {
            "patient_id": patients[0]["id"],
            "department_id": cardiology,
            "urgency": "routine",
            "reason": "胸闷两周",
            "question": "是否需要转诊？",
        },
    )
    url = f"/api/consultations/{created['consultation']['id']}"
    await _post(cardio_ctx, cardio, f"{url}/accept", {})
    specialists = await (
        await coord_ctx.request.get(f"/api/departments/{cardiology}/specialists")
    ).json()
    other = next(s["id"] for s in specialists["specialists"] if s["display_name"] == "刘芳")
    await _post(coord_ctx, coord, f"{url}/assign", {"specialist_id": other})

    await clinic.goto(f"/consultations/{created['consultation']['id']}")
    item = clinic.locator('#timeline li[data-kind="reassigned"] .timeline-text')
    await item.wait_for()
    text = await item.text_content() or ""
    assert "重新分配了会诊" in text
    assert "reassigned" not in text
    for line in await clinic.locator("#timeline .timeline-text").all_text_contents():
        assert not any(c.isascii() and c.isalpha() for c in line), line
    assert await problems.collect(clinic) == []
