"""The medical-affairs statistics page in Chromium, over a year of history.

The page draws its charts (every canvas has pixels), shows the API's numbers in
its tables, changes with a filter, offers downloads of the same query, and is
screenshotted in both languages, phone and desktop width (``screenshots/``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from web.keys import DB

from ..stats_history import make_history

pytestmark = pytest.mark.browser

CANVASES = (
    "chart-by-month",
    "chart-by-department",
    "chart-by-institution",
    "chart-outcomes",
    "chart-times",
    "chart-compliance",
    "chart-recording",
)
# Whether a canvas has any pixel drawn (not fully transparent).
DRAWN = """(id) => {
  const c = document.getElementById(id);
  if (!c || !c.width || !c.height) return false;
  const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
  return false;
}"""
VIEWPORTS = {"390": {"width": 390, "height": 844}, "1280": {"width": 1280, "height": 900}}


@pytest.fixture
async def history(live_app: tuple[web.Application, str]) -> Any:
    return await make_history(live_app[0][DB], now=datetime.now(UTC))


async def _loaded(page: Any) -> None:
    await page.locator('body[data-stats-loaded="true"]').wait_for()


async def _api(page: Any, query: str) -> dict[str, Any]:
    response = await page.request.get(f"/api/stats?{query}")
    assert response.status == 200, await response.text()
    return dict((await response.json())["stats"])


async def _query(page: Any) -> str:
    return str(
        await page.evaluate(
            "new URLSearchParams([...new FormData(document.getElementById('stats-filters'))]"
            ".filter(([, v]) => v)).toString()"
        )
    )


async def test_the_page_draws_the_api_numbers(open_as: Any, history: Any) -> None:
    context, page, problems = await open_as("coord1", locale="en")
    # The top bar leads there.
    await page.click("a.topbar-link")
    await page.wait_for_url("**/stats")
    await _loaded(page)
    for canvas in CANVASES:
        assert await page.evaluate(DRAWN, canvas), canvas
    stats = await _api(page, await _query(page))
    assert len(stats["by_month"]) == 12
    assert await page.text_content("#tile-total") == f"{stats['total']:,}"
    first = stats["by_institution"][0]
    cells = page.locator("#table-by-institution tbody tr").first.locator("td")
    assert await cells.all_text_contents() == [first["name"], f"{first['count']:,}"]
    month_rows = page.locator("#table-by-month tbody tr")
    assert await month_rows.count() == 12
    last = stats["by_month"][-1]
    assert (await month_rows.last.locator("td").all_text_contents())[-1] == str(last["total"])
    # A filter redraws with the filtered numbers.
    await page.select_option("#f-urgency", "emergency")
    await page.wait_for_function(
        "(n) => document.getElementById('tile-total').textContent === String(n)",
        arg=(await _api(page, (await _query(page)) or "urgency=emergency"))["total"],
    )
    query = await _query(page)
    assert "urgency=emergency" in query
    emergencies = await _api(page, query)
    assert await page.text_content("#tile-total") == str(emergencies["total"])
    # The downloads carry the same query.
    assert await page.get_attribute("#download-csv", "href") == f"/api/stats.csv?{query}"
    async with page.expect_download() as info:
        await page.click("#download-xlsx")
    download = await info.value
    assert download.suggested_filename.startswith("teleconsult-stats-")
    assert download.suggested_filename.endswith(".xlsx")
    assert await problems.collect(page) == []
    await context.close()


async def test_screenshots(open_as: Any, history: Any, screenshots_dir: Path) -> None:
    for user in ("coord1", "admin1"):
        for locale in ("zh_CN", "en"):
            for name, viewport in VIEWPORTS.items():
                context, page, problems = await open_as(user, locale=locale, viewport=viewport)
                await page.goto("/stats")
                await _loaded(page)
                for canvas in CANVASES:
                    assert await page.evaluate(DRAWN, canvas), canvas
                await page.locator(".stats-help details").evaluate("(d) => { d.open = true; }")
                path = screenshots_dir / f"stats-{user}-{locale}-{name}.png"
                await page.screenshot(path=str(path), full_page=True)
                overflow = await page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, f"{path.name}: {overflow}px horizontal overflow"
                assert await problems.collect(page) == [], path.name
                await context.close()
