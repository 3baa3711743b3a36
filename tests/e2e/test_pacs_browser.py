"""Studies from the regional PACS, found and attached by the clinic, scrolled by the specialist.

A real Orthanc (DICOMweb, HTTP basic) holds the patient's studies (tests/data/dicom).
In a live call the clinic's doctor opens "区域影像" in the records panel, sees the
patient's studies, attaches the 16-frame MR; the specialist's panel lists it, and
the specialist scrolls through its frames (wheel, keys) and changes window/level
(a preset, then a drag on the image): what the canvas shows changes each time.
Then a CT series of three instances, attached the same way, is one entry and one
viewer of three frames; the specialist shows it to all and the clinic follows
frame by frame.
Screenshots of the PACS list and the frame viewer, zh and en, 1400 and 390 wide.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from records.schema import patients
from web.keys import DB
from web.settings import Secret, Settings

from ..orthanc import PASSWORD, USER, Orthanc, orthanc_or_skip, sample
from ..scenario import Scenario
from .conftest import LOOPBACK_NETWORKS, NetNs, video_flowing

pytestmark = pytest.mark.browser

PHANTOM_STUDY = "1.2.826.0.1.3680043.8.498.7319.1"
CT_STUDY = "1.2.826.0.1.3680043.8.498.7319.11"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}
STATE = "() => window.__records && window.__records.state"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    orthanc_or_skip()
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(settings: Settings, orthanc: Orthanc) -> Settings:
    return dataclasses.replace(
        settings,
        ice_allowed_networks=LOOPBACK_NETWORKS,
        pacs_url=orthanc.dicomweb_url,
        pacs_username=USER,
        pacs_password=Secret(PASSWORD),
    )


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


async def dicom_state(page: Any, condition: str) -> dict[str, Any]:
    """The viewer's state once ``condition`` (JS over ``d``, the dicom state) holds."""
    await page.wait_for_function(
        f"() => {{ const s = window.__records && window.__records.state;"
        f" const d = s && s.dicom; return Boolean(d && ({condition})); }}",
        timeout=15_000,
    )
    state: dict[str, Any] = (await page.evaluate(STATE))["dicom"]
    return state


async def test_clinic_attaches_a_pacs_study_and_the_specialist_scrolls_its_frames(
    open_as: Any,
    scenario: Scenario,
    live_app: Any,
    orthanc: Orthanc,
    screenshots_dir: Path,
) -> None:
    app, _ = live_app
    _, clinic, clinic_problems = await open_as("clinic1")  # zh_CN
    _, cardio, cardio_problems = await open_as("cardio1", locale="en")
    c = await scenario.consultation("accepted")
    async with app[DB].read() as conn:
        nid = (
            await conn.execute(
                sa.select(patients.c.national_id).where(patients.c.id == c.patient_id)
            )
        ).scalar_one()
    orthanc.upload(sample("phantom_mr_16frames.dcm", PatientID=nid))
    for n in (1, 2, 3):
        orthanc.upload(sample(f"phantom_ct_slice{n}.dcm", PatientID=nid))
    orthanc.upload(sample("MR_small.dcm", PatientID="110101199001011234"))

    await clinic.goto(f"/consultations/{c.id}/call")
    await cardio.goto(f"/consultations/{c.id}/call")
    for page in (clinic, cardio):
        await video_flowing(page, 1, label="pacs")

    # The clinic searches the PACS: the patient's two studies, not the stranger's.
    assert not await cardio.locator("#records-pacs-open").is_visible()
    await clinic.click("#records-pacs-open")
    study = clinic.locator(f'#pacs-list li[data-study-uid="{PHANTOM_STUDY}"]')
    await study.wait_for()
    assert await clinic.locator("#pacs-list li").count() == 2
    ct_text = await clinic.locator(f'#pacs-list li[data-study-uid="{CT_STUDY}"]').text_content()
    assert "Chest CT (phantom)" in (ct_text or "") and "图像 3 幅" in (ct_text or "")
    text = await study.text_content() or ""
    assert "Brain MR (phantom)" in text and "2026-11-18" in text and "序列 1 个" in text
    await clinic.screenshot(path=str(screenshots_dir / "pacs-search-zh_CN-1400.png"))
    await clinic.set_viewport_size(PHONE)
    await clinic.locator("#pacs").scroll_into_view_if_needed()
    await clinic.screenshot(path=str(screenshots_dir / "pacs-search-zh_CN-390.png"))
    overflow = await clinic.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{overflow}px horizontal overflow"
    await clinic.set_viewport_size(DESKTOP)

    # Attach: stored as the consultation's document, opened in the clinic's panel.
    await study.locator("button.pacs-attach").click()
    await clinic.locator(
        f'#pacs-list li[data-study-uid="{PHANTOM_STUDY}"][data-state="attached"]'
    ).wait_for(state="attached")
    first = await dicom_state(clinic, "d.drawn === 1")
    assert first["frames"] == 16
    # The list closes to make room for the study; the image says where it is.
    assert not await clinic.locator("#pacs").is_visible()
    overlay = clinic.locator("#viewer-body .dicom-overlay")
    assert await overlay.text_content() == "1/16 · C 1000 W 2000"
    document_id = (await clinic.evaluate(STATE))["documentId"]

    # The specialist's list picks it up; they open it: frame 1 of 16.
    item = cardio.locator(f'#records-list li[data-document-id="{document_id}"]')
    await item.wait_for()
    assert "MR · T2 axial · 2026-11-18" in (await item.text_content() or "")
    await item.locator("button").click()
    one = await dicom_state(cardio, "d.drawn === 1")
    assert (one["frames"], one["center"], one["width"]) == (16, 1000, 2000)
    label = cardio.locator("#viewer-body .dicom-frame-label")
    assert await label.text_content() == "Frame 1 of 16"

    # The mouse wheel over the image turns the frames.
    canvas = cardio.locator("#viewer-body canvas.dicom-canvas")
    await canvas.hover()
    await cardio.mouse.wheel(0, 120)
    two = await dicom_state(cardio, "d.drawn === 2")
    assert two["hash"] != one["hash"]
    await cardio.mouse.wheel(0, 120)
    await cardio.mouse.wheel(0, 120)
    three = await dicom_state(cardio, "d.drawn === 4")
    # The keys, once the image has the focus: down, then End.
    await canvas.focus()
    await cardio.keyboard.press("ArrowDown")
    five = await dicom_state(cardio, "d.drawn === 5")
    assert len({one["hash"], two["hash"], three["hash"], five["hash"]}) == 4
    await cardio.keyboard.press("End")
    last = await dicom_state(cardio, "d.drawn === 16")
    assert await label.text_content() == "Frame 16 of 16"
    assert await cardio.locator("#viewer-body .dicom-slider").input_value() == "16"
    # The slider goes back.
    await cardio.locator("#viewer-body .dicom-slider").fill("8")
    await dicom_state(cardio, "d.drawn === 8")

    # Window/level: a preset, then a drag on the image.
    await cardio.locator("#viewer-body .dicom-preset").select_option("soft")
    soft = await dicom_state(cardio, "d.preset === 'soft'")
    assert (soft["center"], soft["width"]) == (40, 400)
    await cardio.locator("#viewer-body .dicom-preset").select_option("file")
    base = await dicom_state(cardio, "d.preset === 'file'")
    assert soft["hash"] != base["hash"]
    box = await canvas.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await cardio.mouse.move(x, y)
    await cardio.mouse.down()
    await cardio.mouse.move(x - 60, y + 30, steps=4)
    await cardio.mouse.up()
    dragged = await dicom_state(cardio, "d.preset === 'custom'")
    assert dragged["width"] < base["width"] and dragged["center"] > base["center"]
    assert dragged["hash"] != base["hash"] and dragged["drawn"] == 8
    assert "Centre" in (
        await cardio.locator("#viewer-body .dicom-window-label").text_content() or ""
    )
    assert last["hash"] != base["hash"]

    await cardio.screenshot(path=str(screenshots_dir / "pacs-viewer-en-1400.png"))
    await clinic.screenshot(path=str(screenshots_dir / "pacs-viewer-zh_CN-1400.png"))
    for page, name in ((cardio, "en"), (clinic, "zh_CN")):
        await page.set_viewport_size(PHONE)
        await page.locator("#viewer-body .dicom-viewer").scroll_into_view_if_needed()
        await page.screenshot(path=str(screenshots_dir / f"pacs-viewer-{name}-390.png"))
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name}: {overflow}px horizontal overflow"

    for page in (cardio, clinic):
        await page.set_viewport_size(DESKTOP)

    # The CT series: three instances, one entry and one viewer of three frames.
    await clinic.click("#records-pacs-open")
    ct = clinic.locator(f'#pacs-list li[data-study-uid="{CT_STUDY}"]')
    await ct.locator("button.pacs-attach").click()
    await dicom_state(clinic, "d.frames === 3 && d.drawn === 1")
    ct_id = (await clinic.evaluate(STATE))["documentId"]
    await cardio.click("#viewer-back")
    ct_item = cardio.locator(f'#records-list li[data-document-id="{ct_id}"]')
    await ct_item.wait_for()
    assert "3 frames" in (await ct_item.text_content() or "")
    # Four documents (the MR and three CT slices), two entries.
    await cardio.wait_for_function(f"() => {STATE}().documents.length === 4")
    assert await cardio.locator("#records-list li").count() == 2
    await ct_item.locator("button").click()
    slice1 = await dicom_state(cardio, "d.frames === 3 && d.drawn === 1")
    assert (slice1["center"], slice1["width"]) == (40, 400)

    # The specialist shows it to all at slice 2: the clinic follows, then to slice 3.
    await cardio.locator("#viewer-body canvas.dicom-canvas").focus()
    await cardio.keyboard.press("ArrowDown")
    slice2 = await dicom_state(cardio, "d.drawn === 2")
    await cardio.click("#viewer-show")
    followed = await dicom_state(clinic, "d.frames === 3 && d.drawn === 2")
    assert followed["hash"] == slice2["hash"]
    shown = clinic.locator("#records-shown")
    assert await shown.text_content() == "张伟 正在展示：CT · Axial 5 mm · 2026-11-20，第 2 帧"
    await cardio.locator("#viewer-body canvas.dicom-canvas").focus()  # from the button
    await cardio.keyboard.press("ArrowDown")
    slice3 = await dicom_state(cardio, "d.drawn === 3")
    followed = await dicom_state(clinic, "d.drawn === 3")
    assert followed["hash"] == slice3["hash"] != slice2["hash"] != slice1["hash"]
    await cardio.screenshot(path=str(screenshots_dir / "pacs-series-en-1400.png"))
    await clinic.screenshot(path=str(screenshots_dir / "pacs-series-zh_CN-1400.png"))

    # On the timeline: the frames shown.
    events = (await (await clinic.request.get(f"/api/consultations/{c.id}/timeline")).json())[
        "events"
    ]
    shown_events = [e["data"] for e in events if e["kind"] == "document_shown"]
    assert [(d["document_id"], d["page"]) for d in shown_events] == [(ct_id, 2), (ct_id, 3)]

    # The consultation page has the same panel: the clinic, in English, after the call.
    _, clinic_en, en_problems = await open_as("clinic1", locale="en")
    await clinic_en.goto(f"/consultations/{c.id}")
    await clinic_en.click("#records-pacs-open")
    # Both studies are in the record already: listed as attached.
    await clinic_en.locator(
        f'#pacs-list li[data-study-uid="{CT_STUDY}"][data-state="attached"]'
    ).wait_for()
    assert await clinic_en.locator('#pacs-list li[data-state="attached"]').count() == 2
    assert "Series: 1 · images: 3" in (
        await clinic_en.locator(f'#pacs-list li[data-study-uid="{CT_STUDY}"]').text_content() or ""
    )
    # Its timeline names the frames shown, not pages.
    await clinic_en.locator("#timeline li", has_text="frame 3").first.wait_for()
    await clinic_en.locator("#pacs").scroll_into_view_if_needed()
    await clinic_en.screenshot(path=str(screenshots_dir / "pacs-search-en-1400.png"))
    await clinic_en.set_viewport_size(PHONE)
    await clinic_en.locator("#pacs").scroll_into_view_if_needed()
    await clinic_en.screenshot(path=str(screenshots_dir / "pacs-search-en-390.png"))

    for problems, page in (
        (clinic_problems, clinic),
        (cardio_problems, cardio),
        (en_problems, clinic_en),
    ):
        assert await problems.collect(page) == []
