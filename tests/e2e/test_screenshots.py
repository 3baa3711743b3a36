"""Screenshots of every page in both languages, phone and desktop width.

They go to ``screenshots/`` (gitignored) for people to look at; the test itself
asserts only that each page rendered its content without console errors or CSP
violations and that nothing overflows the viewport horizontally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..scenario import Scenario

pytestmark = pytest.mark.browser

VIEWPORTS = {"390": {"width": 390, "height": 844}, "1400": {"width": 1400, "height": 900}}
LOCALES = ("zh_CN", "en")


async def seed(scenario: Scenario) -> None:
    """Put a few requests in the queues so the pages show real lists."""
    for code, urgency, reason in (
        ("cardiology", "urgent", "胸闷气短 3 天，心电图 ST 段改变"),
        ("respiratory", "routine", "慢性咳嗽 2 个月，胸片示右下肺阴影"),
    ):
        await scenario.consultation(
            department=code,
            urgency=urgency,
            reason=reason,
            question="是否需要转上级医院进一步检查？目前用药是否需要调整？",
        )


async def shoot(page: Any, problems: Any, path: Path, ready: str) -> None:
    await page.locator(ready).first.wait_for()
    await page.wait_for_load_state("networkidle")
    await page.screenshot(path=str(path), full_page=True)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{path.name}: {overflow}px horizontal overflow"
    assert await problems.collect(page) == [], path.name


PAGES = {
    # name: (user, what shows that the page has loaded its data)
    "login": (None, "#login-form"),
    "clinic": ("clinic1", "#requests-list li"),
    "queue": ("cardio1", "#queue-list li"),
    "queue-junior": ("cardio_junior", "#practice-notice"),
    "coordinator": ("coord1", "#waiting-list li"),
}


async def test_screenshots(open_as: Any, scenario: Scenario, screenshots_dir: Path) -> None:
    await seed(scenario)
    for locale in LOCALES:
        for vp_name, viewport in VIEWPORTS.items():
            for name, (user, ready) in PAGES.items():
                context, page, problems = await open_as(user, locale=locale, viewport=viewport)
                path = screenshots_dir / f"{name}-{locale}-{vp_name}.png"
                await shoot(page, problems, path, ready)
                await context.close()
