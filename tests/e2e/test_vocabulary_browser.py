"""The consultation page labels every timeline event in the page's language.

It once showed the raw token ``reassigned`` for a consultation a coordinator had
moved to another specialist (the page's strings had no label for that kind).
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser


async def test_a_reassigned_consultation_shows_the_chinese_label(
    open_as: Any, scenario: Any
) -> None:
    c = await scenario.consultation("accepted")
    coord = await scenario.user("coord1")
    department = c.json["department"]["id"]
    _, specialists = await coord.get(f"/api/departments/{department}/specialists")
    other = next(s["id"] for s in specialists["specialists"] if s["display_name"] == "刘芳")
    status, _ = await coord.post(f"{c.url}/assign", {"specialist_id": other})
    assert status == 200

    _, clinic, problems = await open_as("clinic1")
    await clinic.goto(f"/consultations/{c.id}")
    item = clinic.locator('#timeline li[data-kind="reassigned"] .timeline-text')
    await item.wait_for()
    text = await item.text_content() or ""
    assert "重新分配了会诊" in text
    assert "reassigned" not in text
    for line in await clinic.locator("#timeline .timeline-text").all_text_contents():
        assert not any(c.isascii() and c.isalpha() for c in line), line
    assert await problems.collect(clinic) == []
