"""A video call between two real browsers through the real server.

The clinic doctor and the cardiologist open the call page from their dashboards;
each page must receive the other's video (a size, and decoded frames that keep
rising), over a candidate pair on loopback. Chat crosses both ways and lands on
the timeline; the consultation goes live. Then the server drops the
specialist's WebSocket: the page reconnects by itself (no reload), the video
still flows, and a chat line sent meanwhile reaches it. A third page whose
camera is refused still joins, with a clear message, and is heard.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSCloseCode, web

from web.auth import COOKIE
from web.keys import DB, SOCKETS
from web.settings import Settings

from ..scenario import Scenario
from ..web.calls import chat_refused
from .conftest import (
    LOOPBACK_ADDRESSES,
    LOOPBACK_NETWORKS,
    NetNs,
    selected_pairs,
    video_flowing,
    watch_call,
)

pytestmark = [pytest.mark.browser, pytest.mark.timing]

MARK = "window.__noReload = true"
STILL_MARKED = "window.__noReload === true"

# getUserMedia that refuses the camera (as a user clicking "Block" would) and
# grants the microphone.
DENY_CAMERA = """
(() => {
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    if (constraints && constraints.video) {
      throw new DOMException("Permission denied", "NotAllowedError");
    }
    return real(constraints);
  };
})();
"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, ice_allowed_networks=LOOPBACK_NETWORKS)


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


async def open_call(page: Any, list_selector: str, cid: str) -> None:
    """Follow the dashboard's link to the call page."""
    link = page.locator(f'{list_selector} li[data-consultation-id="{cid}"] a[data-action="call"]')
    await link.click()
    await page.wait_for_url(f"**/consultations/{cid}/call")
    await page.evaluate(MARK)


async def chat(page: Any, text: str) -> None:
    await page.fill("#chat-text", text)
    await page.press("#chat-text", "Enter")


def chat_line(page: Any, text: str) -> Any:
    return page.locator('#chat-log li[data-kind="chat"]:not([data-pending])', has_text=text)


async def test_two_doctors_see_each_other_and_survive_a_signaling_drop(
    open_as: Any, scenario: Scenario, live_app: tuple[web.Application, str]
) -> None:
    started = time.monotonic()
    app, _ = live_app
    _, clinic, clinic_problems = await open_as("clinic1")  # zh_CN
    cardio_ctx, cardio, cardio_problems = await open_as("cardio1", locale="en")
    cid = (await scenario.consultation("accepted")).id

    # Both dashboards offer the call (pushed, no reload), and lead to it.
    await open_call(clinic, "#requests-list", cid)
    await open_call(cardio, "#mine-list", cid)

    for page in (clinic, cardio):
        await video_flowing(page, 1, label="first")
    for page in (clinic, cardio):
        for pair in await selected_pairs(page):
            assert pair["local"]["address"] in LOOPBACK_ADDRESSES, pair
            assert pair["remote"]["address"] in LOOPBACK_ADDRESSES, pair
            assert pair["width"] > 0
    assert await clinic.locator("#call-banner").text_content() == "会诊进行中"
    assert await cardio.locator("#call-banner").text_content() == "Consultation in session"
    tile = cardio.locator("#tiles .tile-remote")
    assert "王建国" in (await tile.locator(".tile-name").text_content() or "")
    assert "城关镇卫生院" in (await tile.locator(".tile-meta").text_content() or "")
    # The quality indicator is measured and drawn (bars, sparkline, direct path).
    quality = cardio.locator("#tiles .quality")
    await cardio.locator('#tiles .quality:not([data-level="0"])').wait_for(timeout=10_000)
    assert await quality.get_attribute("data-relayed") == "false"

    # Mute is seen by the other side.
    await clinic.click("#ctl-mic")
    await tile.locator(".flag-mic").wait_for(state="visible")
    await clinic.click("#ctl-mic")
    await tile.locator(".flag-mic").wait_for(state="hidden")

    # Chat both ways, on both pages, and on the timeline.
    await chat(clinic, "患者血压 150/95")
    await chat_line(cardio, "患者血压 150/95").wait_for()
    await chat(cardio, "Please send the ECG")
    await chat_line(clinic, "Please send the ECG").wait_for()
    await chat_line(clinic, "患者血压 150/95").wait_for()

    detail = await (await clinic.request.get(f"/api/consultations/{cid}")).json()
    assert detail["consultation"]["state"] == "live"
    events = (await (await clinic.request.get(f"/api/consultations/{cid}/timeline")).json())[
        "events"
    ]
    chats = [e["data"]["text"] for e in events if e["kind"] == "chat"]
    assert chats == ["患者血压 150/95", "Please send the ECG"]

    # The server drops the specialist's socket(s); their reconnects are refused
    # for a moment, so the clinic's next line is sent while they are away.
    token = next(c["value"] for c in await cardio_ctx.cookies() if c["name"] == COOKIE)
    blocked = True

    async def gate(ws: Any) -> None:
        if blocked:
            await ws.close(code=1011, reason="test: server unreachable")
        else:
            ws.connect_to_server()

    await cardio_ctx.route_web_socket("**/ws", gate)
    cut = [ws for ws, owner in app[SOCKETS].items() if owner == token]
    assert cut, "the specialist has no socket"
    connects_before = await cardio.evaluate("window.__call.connects")
    for ws in cut:
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"test: drop")
    await cardio.locator('#call-banner[data-kind="warn"]').wait_for()
    # The clinic sees the specialist reconnecting, then writes meanwhile.
    await clinic.locator('#tiles .tile-remote[data-connected="false"]').wait_for()
    await chat(clinic, "心电图已上传")
    await chat_line(clinic, "心电图已上传").wait_for()
    # A line typed by the specialist while offline is queued and sent later.
    await chat(cardio, "Reading it now")
    await cardio.locator("#chat-log li[data-pending]", has_text="Reading it now").wait_for()

    blocked = False
    reconnected = time.monotonic()
    await cardio.wait_for_function(
        "(n) => window.__call.connects > n", arg=connects_before, timeout=10_000
    )
    await chat_line(cardio, "心电图已上传").wait_for(timeout=10_000)
    await chat_line(clinic, "Reading it now").wait_for(timeout=10_000)
    for page in (clinic, cardio):
        await video_flowing(page, 1, label="after-drop", timeout_ms=10_000)
    assert time.monotonic() - reconnected < 10
    await cardio.locator('#call-banner[data-kind="live"]').wait_for()
    await clinic.locator('#tiles .tile-remote[data-connected="true"]').wait_for()

    for page, problems in ((clinic, clinic_problems), (cardio, cardio_problems)):
        assert await page.evaluate(STILL_MARKED), "the page reloaded"
        found = [p for p in await problems.collect(page) if "test: " not in p]
        assert found == []
    print(f"two-party call test: {time.monotonic() - started:.1f}s")


async def test_a_chat_line_not_stored_is_marked_and_can_be_sent_again(
    open_as: Any, scenario: Scenario, live_app: tuple[web.Application, str], screenshots_dir: Path
) -> None:
    app, _ = live_app
    _, clinic, clinic_problems = await open_as("clinic1")  # zh_CN
    _, cardio, cardio_problems = await open_as("cardio1", locale="en")
    cid = (await scenario.consultation("accepted")).id
    await clinic.goto(f"/consultations/{cid}/call")
    await cardio.goto(f"/consultations/{cid}/call")
    await cardio.locator('#call-banner[data-kind="live"]').wait_for()
    async with chat_refused(app[DB]):
        await chat(clinic, "血氧 91%")
        # Both pages say the line is not on the record; only its author may resend it.
        failed = "#chat-log li[data-failed]"
        await cardio.locator(failed, has_text="not saved to the record").wait_for()
        await clinic.locator(failed, has_text="未存入记录").wait_for()
        assert await cardio.locator(f"{failed} .chat-retry").count() == 0
        for page, locale in ((clinic, "zh_CN"), (cardio, "en")):
            for width, height in ((1400, 900), (390, 844)):
                await page.set_viewport_size({"width": width, "height": height})
                await page.locator("#chat-log").screenshot(
                    path=str(screenshots_dir / f"call-chat-failed-{locale}-{width}.png")
                )
    await clinic.locator(f"{failed} .chat-retry", has_text="重新发送").click()
    for page in (clinic, cardio):
        await chat_line(page, "血氧 91%").wait_for()
        assert await page.locator("#chat-log li[data-pending]").count() == 0
    events = (await (await clinic.request.get(f"/api/consultations/{cid}/timeline")).json())[
        "events"
    ]
    assert [e["data"]["text"] for e in events if e["kind"] == "chat"] == ["血氧 91%"]
    for page, problems in ((clinic, clinic_problems), (cardio, cardio_problems)):
        assert await problems.collect(page) == []


async def test_a_lost_offer_is_sent_again_and_the_call_comes_up(
    open_as: Any, scenario: Scenario, live_app: tuple[web.Application, str]
) -> None:
    clinic_ctx, clinic, clinic_problems = await open_as("clinic1")
    cardio_ctx, cardio, cardio_problems = await open_as("cardio1", locale="en")
    cid = (await scenario.consultation("accepted")).id
    # The first offer either page sends is lost on the way (as when it races a
    # reconnect of the other side). The one who joins second usually offers, but
    # a socket that flaps under load can make it the other: either way one offer
    # is lost and the call must come up.
    lost: list[str] = []

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if not lost and isinstance(message, str) and json.loads(message)["type"] == "offer":
                lost.append(message)
                return
            server.send(message)

        ws.on_message(to_server)

    for context in (clinic_ctx, cardio_ctx):
        await context.route_web_socket("**/ws", route)
    await clinic.goto(f"/consultations/{cid}/call")
    await clinic.locator("#call-banner").wait_for()
    await cardio.goto(f"/consultations/{cid}/call")
    for page in (clinic, cardio):
        await video_flowing(page, 1, label="lost-offer", timeout_ms=30_000)
    assert len(lost) == 1
    for page, problems in ((clinic, clinic_problems), (cardio, cardio_problems)):
        assert await problems.collect(page) == []


async def test_denied_camera_goes_on_with_voice(open_as: Any, scenario: Scenario) -> None:
    _, clinic, _ = await open_as("clinic1", locale="en")
    cardio_ctx, cardio, cardio_problems = await open_as("cardio1", locale="en")
    cid = (await scenario.consultation("accepted")).id
    await cardio_ctx.add_init_script(DENY_CAMERA)

    await clinic.goto(f"/consultations/{cid}/call")
    await cardio.goto(f"/consultations/{cid}/call")

    notice = cardio.locator("#media-notice")
    await notice.wait_for()
    assert await notice.get_attribute("data-problems") == "camera_denied"
    assert "Camera access was denied" in (await notice.text_content() or "")
    assert await cardio.locator("#ctl-cam").is_disabled()
    assert not await cardio.locator("#ctl-mic").is_disabled()

    # The specialist still sees the clinic, and the clinic sees that the
    # specialist's camera is off and receives their audio.
    await video_flowing(cardio, 1, label="deny")
    tile = clinic.locator("#tiles .tile-remote")
    await clinic.locator('#tiles .tile-remote[data-video="off"] .flag-cam').wait_for()
    await watch_call(clinic)
    await clinic.wait_for_function(
        "() => Object.values(window.__callTest.latest).some((s) => s.audioBytes > 2000)",
        polling=250,
        timeout=15_000,
    )
    assert await tile.count() == 1
    assert await cardio_problems.collect(cardio) == []


async def test_call_screenshots(open_as: Any, scenario: Scenario, screenshots_dir: Path) -> None:
    """The call page with two people connected, in both languages, desktop and phone."""
    _, cardio, _ = await open_as("cardio1", locale="en")
    _, clinic, _ = await open_as("clinic1")
    cid = (await scenario.consultation("accepted")).id
    await cardio.goto(f"/consultations/{cid}/call")
    await clinic.goto(f"/consultations/{cid}/call")
    await video_flowing(cardio, 1, label="shots")
    await chat(clinic, "患者男，75 岁，胸痛 2 小时，心电图已上传。")
    await chat(cardio, "收到，正在看心电图。")
    for locale in ("zh_CN", "en"):
        _, page, problems = await open_as("clinic1", locale=locale)
        await clinic.click("#ctl-leave")  # one tab per person in a call
        clinic = page
        await page.goto(f"/consultations/{cid}/call")
        await video_flowing(page, 1, label="shots")
        # Wait until the quality indicator has drawn its bitrate history.
        await page.wait_for_function(
            "() => (document.querySelector('#tiles .spark polyline')"
            "?.getAttribute('points') || '').split(' ').length >= 2",
            timeout=15_000,
        )
        await chat_line(page, "收到，正在看心电图。").wait_for()
        for width, height in ((1400, 900), (390, 844)):
            await page.set_viewport_size({"width": width, "height": height})
            path = screenshots_dir / f"call-{locale}-{width}.png"
            await page.screenshot(path=str(path), full_page=True)
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path.name}: {overflow}px horizontal overflow"
        assert await problems.collect(page) == []
