"""The viewer's watermark in Chromium: over replayed video, and drawn into documents.

A short recording (made here with PyAV and stored as the recorder would store
it, so no call is needed) is replayed by a reviewer: each player carries a
canvas with the reviewer's name, institution and the time, redrawn as time
passes, and put back when the page removes or hides it. A watermarked export
downloads from the page. On the consultation page, a PDF page, an image and a
text report opened in the records panel carry the viewer's mark: drawn into the
content's canvas for the first two, laid over the text for the last.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web
from av.audio.frame import AudioFrame
from PIL import Image

from records import store
from web.keys import DB

from ..records.samples import LAB_REPORT
from ..scenario import Scenario
from .test_records_browser import report_pdf, upload

pytestmark = pytest.mark.browser

VIEWPORTS = {390: {"width": 390, "height": 844}, 1400: {"width": 1400, "height": 900}}

# The overlay of the first player: what it says, and how many of its pixels are drawn.
OVERLAY = """(selector) => {
  const c = document.querySelector(selector);
  if (!c || !c.width) return null;
  const { data } = c.getContext("2d").getImageData(0, 0, c.width, c.height);
  let drawn = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) drawn += 1;
  const style = getComputedStyle(c);
  return { text: c.dataset.watermark || "", at: c.dataset.watermarkAt || "", drawn,
           pixels: c.width * c.height, pointerEvents: style.pointerEvents,
           display: style.display, visibility: style.visibility };
}"""

# In a document canvas: pixels that are neither the page's white nor its own
# colours, i.e. the mark's grey strokes, in the lower half (where the test's
# PDF and image are plain white).
GREY_BELOW = """(selector) => {
  const c = document.querySelector(selector);
  if (!c || !c.width) return null;
  const h = Math.floor(c.height / 2);
  const { data } = c.getContext("2d").getImageData(0, h, c.width, c.height - h);
  let grey = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] < 235 && data[i] === data[i + 2]) grey += 1;
  return { text: c.dataset.watermark || "", grey, pixels: data.length / 4 };
}"""


def synthetic_recording(path: Path, seconds: int = 4) -> None:
    """A VP8 + Opus WebM like the recorder's: a moving colour bar, a tone."""
    with av.open(str(path), "w", format="webm") as out:
        video = out.add_stream("libvpx", rate=30)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = out.add_stream("libopus", rate=48000)
        for i in range(seconds * 30):
            pixels = np.full((240, 320, 3), (40, 90, 110), np.uint8)
            pixels[:, (i * 4) % 320 : (i * 4) % 320 + 40] = (220, 180, 60)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(960) / 48000
        for i in range(seconds * 50):
            samples = (3000 * np.sin(2 * np.pi * 440 * (t + i * 0.02))).astype(np.int16)
            sound = AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
            sound.sample_rate, sound.pts, sound.time_base = 48000, i * 960, Fraction(1, 48000)
            out.mux(audio.encode(sound))
        out.mux(audio.encode(None))


async def recorded_consultation(
    app: web.Application, scenario: Scenario, recordings: Path
) -> tuple[str, str]:
    c = await scenario.consultation("ended")
    participant = c.clinic.account["id"]
    relative = Path(c.id) / "clinic-1.webm"
    target = recordings / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    synthetic_recording(target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    now = datetime.now(UTC)

    def work(conn: Any) -> str:
        rid = store.add_recording(
            conn,
            consultation_id=c.id,
            participant_id=participant,
            part=1,
            path=str(relative),
            container="webm",
            video_codec="vp8",
            audio_codec="opus",
            started_at=now,
            offset_ms=0,
        )
        store.update_recording(
            conn,
            rid,
            status="finished",
            duration_ms=4000,
            size=target.stat().st_size,
            sha256=digest,
            finished_at=now,
            retain_until=now,
        )
        return rid

    rid = await app[DB].run_write(work)
    return c.id, rid


def codecs(path: Path) -> tuple[str, str]:
    with av.open(str(path)) as c:
        return c.streams.video[0].codec_context.name, c.streams.audio[0].codec_context.name


def expected_mark(account: dict[str, Any]) -> str:
    return f"{account['display_name']} · {account['institution']['name']}"


async def test_replay_carries_the_viewers_watermark_which_comes_back_when_removed(
    open_as: Any,
    scenario: Scenario,
    live_app: tuple[web.Application, str],
    settings: Any,
    screenshots_dir: Path,
) -> None:
    app, _ = live_app
    cid, rid = await recorded_consultation(app, scenario, settings.data_dir / "recordings")
    reviewer = await scenario.user("review1")
    mark = expected_mark(reviewer.account)

    _, review, problems = await open_as("review1", locale="en")
    await review.goto(f"/consultations/{cid}/replay")
    await review.locator('#replay[data-state="ready"]').wait_for()
    overlay = f'figure.player[data-recording-id="{rid}"] canvas.wm-overlay'
    first = await review.evaluate(OVERLAY, overlay)
    assert first is not None and first["text"].startswith(mark), first
    assert first["pointerEvents"] == "none" and first["display"] != "none"
    assert 0.02 * first["pixels"] < first["drawn"] < 0.9 * first["pixels"], first

    # Time moves on in the mark: it is redrawn every few seconds.
    await review.wait_for_function(
        "([s, at]) => { const c = document.querySelector(s);"
        " return c && c.dataset.watermarkAt !== at; }",
        arg=[overlay, first["at"]],
        timeout=10_000,
    )
    # The viewer cannot take it away: removed or hidden, a new one is drawn.
    for tamper in (
        "(s) => document.querySelector(s).remove()",
        "(s) => document.querySelector(s).setAttribute('hidden', '')",
        "(s) => { document.querySelector(s).className = 'gone'; }",
    ):
        await review.evaluate(tamper, overlay)
        await review.wait_for_function(
            "([s, mark]) => { const c = document.querySelector(s);"
            " return c && !c.hidden && (c.dataset.watermark || '').startsWith(mark); }",
            arg=[overlay, mark],
            timeout=5_000,
        )
    assert await review.locator(f"{overlay}").count() == 1
    assert await review.locator("video[controls]").count() == 0

    # The video plays under the mark.
    await review.click("#play")
    await review.wait_for_function(
        "() => window.__replay.players().every((p) => p.videoWidth > 0 && p.currentTime > 0.5)",
        timeout=15_000,
    )
    await review.click("#play")

    # A watermarked copy is made on request and downloaded.
    async with review.expect_download(timeout=60_000) as download_info:
        await review.click(f'figure.player[data-recording-id="{rid}"] .player-export-btn')
    download = await download_info.value
    assert "watermarked" in download.suggested_filename
    copy = Path(await download.path())
    assert await asyncio.to_thread(codecs, copy) == ("vp8", "opus")
    status = review.locator(f'figure.player[data-recording-id="{rid}"] .player-export-status')
    assert await status.text_content() == "The watermarked copy is being downloaded."

    # For people to look at (screenshots/ is not committed).
    for locale in ("en", "zh_CN"):
        await review.goto(f"/consultations/{cid}/replay?lang={locale}")
        await review.locator('#replay[data-state="ready"]').wait_for()
        for width, viewport in VIEWPORTS.items():
            await review.set_viewport_size(viewport)
            await review.wait_for_function(
                "(s) => { const c = document.querySelector(s);"
                " const r = c && c.getBoundingClientRect();"
                " return r && Math.abs(c.width - r.width * devicePixelRatio) < 2; }",
                arg=overlay,
            )
            await review.screenshot(
                path=str(screenshots_dir / f"replay-watermark-{locale}-{width}.png"),
                full_page=True,
            )
            overflow = await review.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, (locale, width, overflow)
    assert await problems.collect(review) == []


def white_png(width: int = 480, height: int = 360) -> bytes:
    image = Image.new("RGB", (width, height), "white")
    image.paste((200, 40, 40), (0, 0, width, 60))  # a red band on top
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_documents_in_the_records_panel_carry_the_viewers_watermark(
    open_as: Any, scenario: Scenario, screenshots_dir: Path
) -> None:
    _, clinic, problems = await open_as("clinic1")
    cid = (await scenario.consultation("accepted")).id
    mark = expected_mark((await scenario.user("clinic1")).account)
    detail = await (await clinic.request.get(f"/api/consultations/{cid}")).json()
    pid = detail["consultation"]["patient"]["id"]
    pdf_id = await upload(clinic, pid, cid, report_pdf(2), "心电图", "ecg.pdf")
    png_id = await upload(clinic, pid, cid, white_png(), "皮疹照片", "rash.png")
    text_id = await upload(clinic, pid, cid, LAB_REPORT.encode(), "血常规", "lab.txt")

    await clinic.goto(f"/consultations/{cid}")
    for doc, selector in (
        (pdf_id, "#viewer-body canvas.viewer-canvas"),
        (png_id, "#viewer-body canvas.viewer-image"),
    ):
        await clinic.click(f'#records-list li[data-document-id="{doc}"] button')
        await clinic.wait_for_function(
            "([s, mark]) => { const c = document.querySelector(s);"
            " return c && (c.dataset.watermark || '').startsWith(mark); }",
            arg=[selector, mark],
            timeout=15_000,
        )
        # Drawn into the content's own pixels: the plain white lower half is not
        # plain any more.
        seen = await clinic.evaluate(GREY_BELOW, selector)
        assert seen["grey"] > 0.01 * seen["pixels"], (doc, seen)
        if doc == pdf_id:
            await clinic.screenshot(path=str(screenshots_dir / "records-watermark-pdf-zh_CN.png"))
        await clinic.click("#viewer-back")
        # Back to the list (after a PDF this once threw in PDF.js 6 and stayed put).
        await clinic.locator("#records-list").wait_for()

    await clinic.click(f'#records-list li[data-document-id="{text_id}"] button')
    overlay = "#viewer-body .viewer-text-box canvas.wm-overlay"
    await clinic.wait_for_function(f"(s) => ({OVERLAY})(s)?.drawn > 100", arg=overlay)
    seen = await clinic.evaluate(OVERLAY, overlay)
    assert seen["text"].startswith(mark) and seen["pointerEvents"] == "none", seen
    await clinic.evaluate("(s) => document.querySelector(s).remove()", overlay)
    await clinic.wait_for_function(
        "([s, mark]) => { const c = document.querySelector(s);"
        " return c && (c.dataset.watermark || '').startsWith(mark); }",
        arg=[overlay, mark],
        timeout=5_000,
    )
    assert await problems.collect(clinic) == []
