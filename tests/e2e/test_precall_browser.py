"""The pre-call check in Chromium, on loopback, through a real coturn.

The page measures the fake camera and microphone, plays the test tone (the test
says it was heard), and probes the server directly and through coturn over UDP
and over TCP (``iceTransportPolicy: "relay"``: the selected pair's local
candidate is a relay allocated over that transport). The server's verdict and
the measured figures show on the page and then on the consultation page, with
a ``precall_checked`` timeline entry. Screenshots in both languages, narrow and
wide, go to ``screenshots/``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from web.settings import Secret, Settings

from ..scenario import Scenario
from ..web.test_precall import report
from .conftest import LOOPBACK_ADDRESSES, LOOPBACK_NETWORKS, NetNs, run_check
from .test_turn_browser import Coturn, coturn  # noqa: F401 - the fixture, shared

pytestmark = [pytest.mark.browser, pytest.mark.timing]


# Where a page keeps its low-bandwidth switch (web/static/js/uplink.js).
LOW_BANDWIDTH_KEY = "teleconsult.lowBandwidth"
# The clinic's check over the benchmark's 15 % loss link, as it read there.
TOWNSHIP_CHECK = report(uplink_kbps=569.0, loss_percent=12.8, rtt_ms=304.0)


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


class TestThroughTurn:
    @pytest.fixture
    def settings(self, settings: Settings, coturn: Coturn) -> Settings:  # noqa: F811
        return dataclasses.replace(
            settings,
            turn_urls=(
                f"turn:127.0.0.1:{coturn.port}?transport=udp",
                f"turn:127.0.0.1:{coturn.port}?transport=tcp",
            ),
            turn_secret=Secret(coturn.secret),
            ice_allowed_networks=LOOPBACK_NETWORKS,
        )

    async def test_the_check_measures_each_path_and_is_kept_with_the_consultation(
        self, open_as: Any, scenario: Scenario, netns: NetNs, screenshots_dir: Path
    ) -> None:
        started = time.monotonic()
        cid = (await scenario.consultation("accepted")).id
        with netns.entered():
            _, page, problems = await open_as("clinic1", viewport={"width": 1280, "height": 900})
            state = await run_check(page, cid)
            paths = {p["name"]: p for p in state["paths"]}
            print("measured:", {n: {k: v for k, v in p.items()} for n, p in paths.items()})
            assert paths["turn_tls"]["status"] == "not_configured"
            for name in ("direct", "turn_udp", "turn_tcp"):
                p = paths[name]
                assert p["status"] == "ok", p
                assert p["uplink_kbps"] > 500, p
                assert p["loss_percent"] < 5, p
                assert 0 <= p["rtt_ms"] < 200, p
                assert p["via"]["address"] in LOOPBACK_ADDRESSES, p
            assert paths["direct"]["via"]["type"] == "host"
            for transport in ("udp", "tcp"):
                via = paths[f"turn_{transport}"]["via"]
                assert (via["type"], via["relayProtocol"]) == ("relay", transport), via
            camera = state["camera"]
            assert camera["status"] == "ok" and camera["width"] > 0 and camera["frame_rate"] > 5
            assert state["microphone"]["status"] == "ok"
            check = state["check"]
            assert check["verdict"] in ("good", "limited"), check
            # The page shows the server's verdict and every measured figure.
            verdict = page.locator("#pc-verdict")
            await verdict.wait_for()
            assert await verdict.get_attribute("data-verdict") == check["verdict"]
            assert (await page.locator("#pc-verdict-text").text_content() or "").strip() in (
                "可以进行会诊",
                "可用，但有限制",
            )
            for name in ("direct", "turn_udp", "turn_tcp"):
                row = page.locator(f"#pc-path-{name}")
                assert await row.get_attribute("data-status") == "ok"
                for figure in ("uplink", "loss", "rtt"):
                    text = await row.locator(f'[data-figure="{figure}"]').text_content()
                    assert text and text != "–", (name, figure, text)
            assert "Mbit/s" in (await page.locator("#pc-path-direct").text_content() or "")
            await page.evaluate("window.scrollTo(0, 0)")
            await page.screenshot(
                path=str(screenshots_dir / "precall-turn-zh_CN-1280.png"), full_page=True
            )

            # The consultation page shows it: who, when, verdict, figures; and the timeline.
            await page.goto(f"/consultations/{cid}")
            item = page.locator(f'#precall-checks li[data-check-id="{check["id"]}"]')
            await item.wait_for()
            assert await item.get_attribute("data-verdict") == check["verdict"]
            network = await item.locator('[data-figure="network"]').text_content()
            assert network and "Mbit/s" in network and "ms" in network, network
            await page.locator('#timeline li[data-kind="precall_checked"]').wait_for()
            assert "完成了通话前检查" in (
                await page.locator('#timeline li[data-kind="precall_checked"]').text_content() or ""
            )
            await page.screenshot(
                path=str(screenshots_dir / "precall-consultation-zh_CN-1280.png"), full_page=True
            )
            assert await problems.collect(page) == []
        print(f"pre-call check test: {time.monotonic() - started:.1f}s")


VIEWPORTS = {"400": {"width": 400, "height": 860}, "1280": {"width": 1280, "height": 900}}


async def test_screenshots_of_the_check(
    open_as: Any, scenario: Scenario, netns: NetNs, screenshots_dir: Path
) -> None:
    """No TURN configured here: those paths say so, and the direct path is measured.

    One check per language (it takes 7-8 s of probing); its result page and the
    consultation page are then looked at in both window widths.
    """
    consultation = await scenario.consultation("accepted")
    cid = consultation.id
    # The clinic's check over a township link, shown beside the specialist's.
    status, body = await consultation.clinic.post(f"{consultation.url}/precall", TOWNSHIP_CHECK)
    assert status == 201, body
    assert [r["code"] for r in body["check"]["report"]["reasons"]] == ["uplink_low", "loss_high"]
    with netns.entered():
        for locale in ("zh_CN", "en"):
            _, page, problems = await open_as("cardio1", locale=locale, viewport=VIEWPORTS["400"])
            # In Chinese, this computer's calls already start in low-bandwidth
            # mode (the call page's switch, kept in localStorage): the result
            # says so and can turn it off. In English it is off, and a good
            # verdict does not offer it.
            low_bandwidth = locale == "zh_CN"
            if low_bandwidth:
                await page.evaluate(f"localStorage.setItem({LOW_BANDWIDTH_KEY!r}, 'on')")
            state = await run_check(page, cid)
            statuses = {p["name"]: p["status"] for p in state["paths"]}
            assert statuses == {
                "direct": "ok",
                "turn_udp": "not_configured",
                "turn_tcp": "not_configured",
                "turn_tls": "not_configured",
            }
            await page.locator("#pc-verdict").wait_for()
            switch = page.locator("#pc-lowbw")
            assert await switch.is_visible() == low_bandwidth
            for width, viewport in VIEWPORTS.items():
                await page.set_viewport_size(viewport)
                await page.evaluate("window.scrollTo(0, 0)")
                await page.screenshot(
                    path=str(screenshots_dir / f"precall-{locale}-{width}.png"), full_page=True
                )
                overflow = await page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, f"{locale} {width}: {overflow}px horizontal overflow"
            if low_bandwidth:
                said = await page.locator("#pc-lowbw-state").inner_text()
                await page.click("#pc-lowbw-switch")
                stored = await page.evaluate(f"localStorage.getItem({LOW_BANDWIDTH_KEY!r})")
                assert stored is None
                assert await switch.get_attribute("data-on") == "false"
                assert await page.locator("#pc-lowbw-state").inner_text() not in ("", said)
            for width, viewport in VIEWPORTS.items():
                await page.set_viewport_size(viewport)
                await page.goto(f"/consultations/{cid}")
                await page.locator("#precall-checks li").first.wait_for()
                # The clinic's limited check names its uplink and its loss, worded.
                reasons = await page.locator("#precall-checks").inner_text()
                assert "0.6 Mbit/s" in reasons and "12.8" in reasons, reasons
                assert "precall.reason" not in reasons, reasons
                await page.screenshot(
                    path=str(screenshots_dir / f"precall-consultation-{locale}-{width}.png"),
                    full_page=True,
                )
                overflow = await page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, f"consultation {locale} {width}: {overflow}px overflow"
            assert await problems.collect(page) == []
