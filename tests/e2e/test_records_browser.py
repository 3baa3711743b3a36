"""Shared records in a live call, then the signed opinion, between two real browsers.

The clinic attached records beforehand (a 3-page PDF, a lab report, a DICOM image)
and imported the patient's summary from the county EMR. In the call the clinic
opens the PDF in the records panel (PDF.js, under the strict CSP), turns to page 2
and shows it to all: the specialist's panel opens the same document at the same
page, drawn on a canvas, and says who shows it; the clinic turns to page 3 and the
specialist follows. Both events are on the timeline. After the call the
specialist writes and signs the opinion on the consultation page; the clinic's
consultation page, already open, shows it (and then an addendum) without a
reload. Screenshots of both pages go to screenshots/ in both languages and widths.
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path
from typing import Any

import pytest

from web.settings import Settings

from ..records.samples import LAB_REPORT, dicom
from ..scenario import Scenario
from ..web.test_summary import sample_bundle
from .conftest import LOOPBACK_NETWORKS, NetNs, csrf, video_flowing

pytestmark = pytest.mark.browser

MARK = "window.__noReload = true"
STILL_MARKED = "window.__noReload === true"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, ice_allowed_networks=LOOPBACK_NETWORKS)


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


def report_pdf(pages: int) -> bytes:
    """A PDF whose pages each carry a coloured band and their number (drawn pixels)."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for n in range(1, pages + 1):
        stream = (
            f"0.06 0.43 0.45 rg 40 742 515 60 re f "
            f"BT /F1 28 Tf 1 1 1 rg 60 762 Td (ECG report - page {n} of {pages}) Tj ET "
            f"0.2 0.2 0.2 RG 2 w 60 400 m 160 400 l 180 {480 + 20 * n} l 200 330 l "
            f"220 400 l 535 400 l S"
        ).encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {pages} >>".encode()
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


async def upload(clinic: Any, pid: str, cid: str, body: bytes, title: str, name: str) -> str:
    response = await clinic.request.post(
        f"/api/patients/{pid}/documents",
        params={"consultation_id": cid, "title": title, "filename": name},
        headers={**await csrf(clinic), "Content-Type": "application/octet-stream"},
        data=body,
    )
    assert response.status == 201, await response.text()
    document_id: str = (await response.json())["document"]["id"]
    return document_id


# What the panel drew: the page it shows, the canvas size, and whether any pixel
# of the canvas is not white (PDF.js really drew the page).
DRAWN = """() => {
  const s = window.__records && window.__records.state;
  const canvas = document.querySelector("#viewer-body canvas");
  if (!s || !s.rendered || !canvas) return null;
  const ctx = canvas.getContext("2d");
  const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
  let ink = 0;
  for (let i = 0; i < data.length; i += 16) {
    if (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200) ink += 1;
  }
  return { ...s, canvasPage: Number(canvas.dataset.page), w: canvas.width, h: canvas.height, ink };
}"""


async def drawn(page: Any, document_id: str, number: int) -> dict[str, Any]:
    await page.wait_for_function(
        "([id, n]) => { const s = window.__records && window.__records.state;"
        " return s && s.documentId === id && s.rendered && s.rendered.page === n; }",
        arg=[document_id, number],
        timeout=15_000,
    )
    result: dict[str, Any] = await page.evaluate(DRAWN)
    return result


async def test_records_shown_in_the_call_then_the_signed_opinion(
    open_as: Any, scenario: Scenario, screenshots_dir: Path
) -> None:
    started = time.monotonic()
    clinic_ctx, clinic, clinic_problems = await open_as("clinic1")  # zh_CN
    _, cardio, cardio_problems = await open_as("cardio1", locale="en")
    cid = (await scenario.consultation("accepted")).id
    detail = await (await clinic.request.get(f"/api/consultations/{cid}")).json()
    pid = detail["consultation"]["patient"]["id"]

    response = await clinic.request.post(
        f"/api/patients/{pid}/fhir", headers=await csrf(clinic), data=sample_bundle()
    )
    assert response.status == 200, await response.text()
    pdf_id = await upload(clinic, pid, cid, report_pdf(3), "心电图", "ecg.pdf")
    text_id = await upload(clinic, pid, cid, LAB_REPORT.encode(), "血常规", "lab.txt")
    dicom_id = await upload(clinic, pid, cid, dicom(), "胸部 CT", "ct.dcm")

    # PDF.js says so (a warning, not an error) when its module worker cannot
    # start and it falls back to parsing on the page's main thread.
    warnings: list[str] = []
    for page in (clinic, cardio):
        page.on("console", lambda msg: warnings.append(msg.text) if "orker" in msg.text else None)

    await clinic.goto(f"/consultations/{cid}/call")
    await cardio.goto(f"/consultations/{cid}/call")
    for page in (clinic, cardio):
        await page.evaluate(MARK)
    for page in (clinic, cardio):
        await video_flowing(page, 1, label="records")

    # The list shows every attached document with its kind.
    for page in (clinic, cardio):
        for doc in (pdf_id, text_id, dicom_id):
            await page.locator(f'#records-list li[data-document-id="{doc}"]').wait_for()
    assert await clinic.locator("#records-upload").is_visible()
    assert not await cardio.locator("#records-upload").is_visible()

    # A text report and a DICOM image open in the specialist's own panel.
    await cardio.click(f'#records-list li[data-document-id="{text_id}"] button')
    await cardio.locator("#viewer-body pre.viewer-text", has_text="白细胞").wait_for()
    await cardio.click("#viewer-back")
    await cardio.click(f'#records-list li[data-document-id="{dicom_id}"] button')
    await cardio.locator("#viewer-body .viewer-tags dd", has_text="CT").wait_for()
    await cardio.wait_for_function(
        # The preview is drawn on a canvas, with the viewer's watermark in it.
        "() => { const c = document.querySelector('#viewer-body canvas.dicom-canvas');"
        " return c && c.width > 0 && (c.dataset.watermark || '').includes('张伟'); }"
    )
    await cardio.click("#viewer-back")

    # The clinic opens the PDF (doc_open), turns to page 2 and shows it to all.
    await clinic.click(f'#records-list li[data-document-id="{pdf_id}"] button')
    first = await drawn(clinic, pdf_id, 1)
    assert first["pages"] == 3 and first["w"] > 0 and first["h"] > 0 and first["ink"] > 0
    assert await clinic.locator("#viewer-page").text_content() == "第 1 页，共 3 页"
    await clinic.click("#viewer-next")
    await drawn(clinic, pdf_id, 2)
    await clinic.click("#viewer-show")
    assert await clinic.get_attribute("#viewer-show", "aria-pressed") == "true"

    # The specialist's panel follows: same document, same page, drawn.
    seen = await drawn(cardio, pdf_id, 2)
    assert (seen["documentId"], seen["page"], seen["canvasPage"]) == (pdf_id, 2, 2)
    assert seen["w"] > 0 and seen["h"] > 0 and seen["ink"] > 0
    assert seen["shownBy"] == "王建国"
    shown = cardio.locator("#records-shown")
    assert await shown.text_content() == "王建国 is showing: 心电图, page 2"
    assert await cardio.locator("#viewer-page").text_content() == "Page 2 of 3"

    # Turning the page while showing takes the others along.
    await clinic.click("#viewer-next")
    await drawn(clinic, pdf_id, 3)
    await drawn(cardio, pdf_id, 3)
    assert await shown.text_content() == "王建国 is showing: 心电图, page 3"

    # Both kinds of event are on the timeline, with the pages.
    events = (await (await clinic.request.get(f"/api/consultations/{cid}/timeline")).json())[
        "events"
    ]
    opened = [e["data"] for e in events if e["kind"] == "document_opened"]
    shown_events = [e["data"] for e in events if e["kind"] == "document_shown"]
    assert {(d["document_id"], d["page"]) for d in opened} >= {(pdf_id, 1)}
    assert [(d["document_id"], d["page"]) for d in shown_events] == [(pdf_id, 2), (pdf_id, 3)]
    assert all(d["title"] == "心电图" for d in shown_events)

    # The summary tab: diagnoses with ICD-10 codes, flagged values.
    await cardio.click("#records-tab-summary")
    await cardio.locator('#records-summary li[data-code="I10"]').wait_for()
    glucose = cardio.locator('#records-summary tr[data-code="1558-6"]')
    assert await glucose.get_attribute("data-flag") == "H"
    assert "3.9–6.1 mmol/L" in (await glucose.text_content() or "")
    potassium = cardio.locator('#records-summary tr[data-code="2823-3"]')
    assert await potassium.get_attribute("data-flag") == "L"
    await cardio.click("#records-tab-documents")

    for page, name in ((clinic, "zh_CN"), (cardio, "en")):
        await page.screenshot(
            path=str(screenshots_dir / f"call-records-{name}-1400.png"), full_page=True
        )
        await page.set_viewport_size(PHONE)
        await page.wait_for_timeout(400)  # the PDF page is redrawn at the new width
        await page.screenshot(
            path=str(screenshots_dir / f"call-records-{name}-390.png"), full_page=True
        )
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"call page {name}: {overflow}px horizontal overflow"
        await page.set_viewport_size(DESKTOP)
    await cardio.click("#records-tab-summary")
    await cardio.screenshot(path=str(screenshots_dir / "call-summary-en-1400.png"), full_page=True)
    await cardio.click("#records-tab-documents")

    # The specialist ends the call; their page offers to write the opinion.
    await cardio.click("#ctl-end")
    await cardio.click('#end-dialog button[value="end"]')
    write = cardio.locator("#write-opinion")
    await write.wait_for()
    await clinic.locator("#call-after").wait_for()

    # The clinic opens the consultation page and waits there.
    await clinic.goto(f"/consultations/{cid}")
    await clinic.locator('body[data-state="ended"] #opinion-card[data-mode="wait"]').wait_for()
    await clinic.evaluate(MARK)
    wait_text = await clinic.locator("#opinion-wait").text_content() or ""
    assert "等待专家签署会诊意见" in wait_text, wait_text

    await write.click()
    await cardio.wait_for_url(f"**/consultations/{cid}")
    await cardio.locator('#opinion-card[data-mode="write"]').wait_for()
    await cardio.fill("#op-findings", "ECG: ST elevation in II, III, aVF; troponin pending.")
    await cardio.fill("#op-impression", "Acute inferior STEMI.")
    await cardio.fill(
        "#op-recommendations", "Aspirin 300 mg and clopidogrel 600 mg now; transfer for PCI."
    )
    await cardio.evaluate("window.scrollTo(0, 0)")
    await cardio.screenshot(
        path=str(screenshots_dir / "consultation-write-en-1400.png"), full_page=True
    )
    await cardio.click("#opinion-submit")
    await cardio.locator("#sign-dialog").wait_for()
    await cardio.click("#sign-confirm")
    article = cardio.locator('#signed article[data-kind="opinion"]')
    await article.wait_for()

    detail = await (await cardio.request.get(f"/api/consultations/{cid}")).json()
    [opinion] = detail["consultation"]["opinions"]
    assert detail["consultation"]["state"] == "signed"
    assert opinion["body"]["impression"] == "Acute inferior STEMI."

    # The clinic's page shows it without a reload: text, signer, fingerprint.
    signed = clinic.locator(f'#signed article[data-opinion-id="{opinion["id"]}"]')
    await signed.wait_for(timeout=10_000)
    assert await clinic.evaluate(STILL_MARKED), "the clinic's page reloaded"
    assert (
        await signed.locator('dd[data-field="impression"]').text_content()
        == "Acute inferior STEMI."
    )
    code = signed.locator(".signed-hash code")
    assert await code.get_attribute("data-sha256") == opinion["sha256"]
    assert opinion["sha256"][:12] in (await code.text_content() or "")
    assert "张" in (await signed.locator(".signed-meta").text_content() or "")
    assert await clinic.locator("#addendum-" + opinion["id"]).count() == 0  # not the author

    # An addendum by the author reaches the clinic the same way.
    await cardio.fill(f"#addendum-{opinion['id']}", "Troponin I 2.3 ng/mL: confirms the STEMI.")
    await cardio.click(f'#signed article[data-opinion-id="{opinion["id"]}"] .addendum-form button')
    await cardio.click("#sign-confirm")
    await clinic.locator("#signed .addendum", has_text="Troponin I 2.3").wait_for(timeout=10_000)
    assert await clinic.evaluate(STILL_MARKED), "the clinic's page reloaded"
    await clinic.locator('#timeline li[data-kind="addendum"]').wait_for()
    await clinic.locator('#timeline li[data-kind="document_shown"]').first.wait_for()

    for page, name in ((clinic, "zh_CN"), (cardio, "en")):
        await page.wait_for_load_state("networkidle")
        await page.evaluate("window.scrollTo(0, 0)")  # the sticky header stays on top
        await page.screenshot(
            path=str(screenshots_dir / f"consultation-signed-{name}-1400.png"), full_page=True
        )
        await page.set_viewport_size(PHONE)
        await page.wait_for_timeout(200)
        await page.screenshot(
            path=str(screenshots_dir / f"consultation-signed-{name}-390.png"), full_page=True
        )
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"consultation page {name}: {overflow}px horizontal overflow"

    for page, problems in ((clinic, clinic_problems), (cardio, cardio_problems)):
        assert await problems.collect(page) == []
    assert warnings == []
    del clinic_ctx
    print(f"records and opinion browser test: {time.monotonic() - started:.1f}s")
