"""The specialist's queue flags overdue consultations, in both languages.

The live app runs on the system clock, so the overdue requests are made now and
then dated back in the database: one routine request 50 h old (past its 48 h to
be accepted) and one accepted consultation 6 days old (past its 3 working days
to be completed), beside a fresh urgent request with its time left. The queue
shows a red badge whose text says what is late and by how long; screenshots in
Chinese and English at phone and desktop width go to ``screenshots/``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from records.schema import consultations
from web.keys import DB

from ..scenario import Scenario

pytestmark = pytest.mark.browser

VIEWPORTS = {"400": {"width": 400, "height": 860}, "1280": {"width": 1280, "height": 900}}
BADGE = "#queue-list li.item-overdue .badge-overdue"


async def _date_back(app: web.Application, cid: str, age: timedelta) -> None:
    at = datetime.now(UTC) - age
    await app[DB].run_write(
        lambda conn: conn.execute(
            sa.update(consultations).where(consultations.c.id == cid).values(created_at=at)
        )
    )


async def test_the_queue_flags_overdue_consultations(
    open_as: Any,
    scenario: Scenario,
    live_app: tuple[web.Application, str],
    screenshots_dir: Path,
) -> None:
    app, _ = live_app
    late = await scenario.consultation(
        reason="反复胸痛 1 周，活动后加重", question="是否需要行冠脉 CTA？"
    )
    await _date_back(app, late.id, timedelta(hours=50))
    await scenario.consultation(
        urgency="urgent",
        reason="胸闷气短 3 天，心电图 ST 段改变",
        question="是否需要转上级医院进一步检查？",
    )
    accepted = await scenario.consultation("accepted", reason="高血压控制不佳，调整用药")
    await _date_back(app, accepted.id, timedelta(days=6))

    texts = {}
    for locale in ("zh_CN", "en"):
        for name, viewport in VIEWPORTS.items():
            context, page, problems = await open_as("cardio1", locale=locale, viewport=viewport)
            badge = page.locator(BADGE)
            await badge.wait_for()
            assert await badge.count() == 1
            item = page.locator("#queue-list li.item-overdue")
            assert await item.get_attribute("data-consultation-id") == late.id
            texts[locale] = (await badge.text_content() or "").strip()
            # The fresh request shows its time left, not a badge.
            fresh = page.locator("#queue-list li:not(.item-overdue) .deadline-left")
            assert await fresh.count() == 1
            # The late accepted one is flagged in "my consultations".
            mine = page.locator("#mine-list li.item-overdue .badge-overdue")
            await mine.wait_for()
            await page.wait_for_load_state("networkidle")
            path = screenshots_dir / f"queue-overdue-{locale}-{name}.png"
            await page.screenshot(path=str(path), full_page=True)
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path.name}: {overflow}px horizontal overflow"
            assert await problems.collect(page) == [], path.name
            await context.close()
    # The consultation's own page shows the same clock beside its state.
    context, page, problems = await open_as("cardio1", locale="zh_CN")
    await page.goto(f"/consultations/{accepted.id}")
    badge = page.locator("#cons-state .badge-overdue")
    await badge.wait_for()
    assert (await badge.text_content() or "").startswith("完成超时")
    await page.screenshot(path=str(screenshots_dir / "consultation-overdue-zh_CN-1400.png"))
    assert await problems.collect(page) == []
    await context.close()
    # Overdue by 2 hours (50 h against 48), said in words in each language.
    assert texts["zh_CN"].startswith("接诊超时") and "2 小时" in texts["zh_CN"], texts
    assert texts["en"].startswith("Acceptance overdue by 2 h"), texts
