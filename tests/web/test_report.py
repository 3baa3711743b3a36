"""The consultation report (会诊报告单): the PDF read back, who gets it, how it is checked.

The PDF is opened with pypdf and its text read back (the Chinese must extract,
so the embedded font has to map its glyphs to Unicode); its page is rendered
with PDFium and the QR code decoded from the pixels (zxing-cpp), so the code
on paper is known to lead to the verification page. Access follows the
consultation's: a foreign clinic's answer is the 404 of an id that never
existed, and each download and each check is in the audit log.
"""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path
from typing import Any

import pypdf
import pypdfium2
import pytest
import sqlalchemy as sa
import zxingcpp
from aiohttp import web

from records.schema import audit_log, patients
from web.keys import DB, REPORTS
from web.settings import Settings

from ..conftest import LoginAs, make_settings
from ..scenario import OPINION, REFERRAL, Consultation, Scenario, User

HEX64 = re.compile(r"^[0-9a-f]{64}$")


async def download(user: User, consultation_id: str) -> Any:
    return await user.client.get(f"/api/consultations/{consultation_id}/report.pdf")


async def report_of(user: User, consultation_id: str) -> tuple[bytes, str]:
    """The PDF bytes and the report's SHA-256 (the response header)."""
    resp = await download(user, consultation_id)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/pdf"
    assert resp.headers["Cache-Control"] == "private, no-store"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    digest = resp.headers["X-Report-SHA256"]
    assert HEX64.match(digest)
    return await resp.read(), digest


def pdf_text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat(text: str) -> str:
    """The text without line breaks (long hashes and URLs wrap)."""
    return re.sub(r"\s+", "", text)


def qr_codes(pdf: bytes) -> list[str]:
    """The QR codes found on the rendered pages (what a phone would read)."""
    doc = pypdfium2.PdfDocument(pdf)
    try:
        found = []
        for i in range(len(doc)):
            page = doc[i]
            image = page.render(scale=3).to_pil()
            found += [r.text for r in zxingcpp.read_barcodes(image)]
            page.close()
        return found
    finally:
        doc.close()


async def full_national_id(app: web.Application, patient_id: str) -> str:
    async with app[DB].read() as conn:
        value = (
            await conn.execute(sa.select(patients.c.national_id).where(patients.c.id == patient_id))
        ).scalar_one()
    return str(value)


async def audit_entries(app: web.Application, action: str) -> list[dict[str, Any]]:
    async with app[DB].read() as conn:
        rows = await conn.execute(
            sa.select(audit_log.c.actor_id, audit_log.c.object_id, audit_log.c.detail)
            .where(audit_log.c.action == action)
            .order_by(audit_log.c.seq)
        )
        return [dict(r) for r in rows.mappings()]


async def consultation_json(c: Consultation) -> dict[str, Any]:
    status, data = await c.clinic.get(c.url)
    assert status == 200, data
    return dict(data["consultation"])


async def test_the_report_reads_back_in_chinese_with_the_id_masked(
    scenario: Scenario, app: web.Application, server: Any
) -> None:
    c = await scenario.consultation("signed")
    pdf, digest = await report_of(c.clinic, c.id)
    text = pdf_text(pdf)
    info = await consultation_json(c)
    assert "会诊报告单" in text
    assert "刘大爷" in text
    for value in OPINION.values():
        assert flat(value) in flat(text), value
    assert info["requesting_institution"]["name"] in text
    assert info["consulted_institution"]["name"] in text
    assert info["department"]["name"] in text
    assert flat(info["reason"]) in flat(text) and flat(info["question"]) in flat(text)
    assert info["requested_by"]["display_name"] in text
    assert c.opinion is not None
    assert c.opinion["sha256"] in flat(text)
    assert digest in flat(text)
    # The resident ID number: masked as on every screen, never whole.
    nid = await full_national_id(app, c.patient_id)
    masked = info["patient"]["national_id_masked"]
    assert masked != nid and masked in text
    assert nid not in flat(text)
    assert nid not in pdf.decode("latin-1")
    # The verification URL is on the page (it wraps: compared without breaks).
    url = f"{server.make_url('/').origin()}/reports/verify/{c.id}?sha256={digest}"
    assert url in flat(text)


async def test_the_font_is_embedded_as_a_subset(scenario: Scenario) -> None:
    c = await scenario.consultation("signed")
    pdf, _ = await report_of(c.clinic, c.id)
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    fonts = reader.pages[0]["/Resources"]["/Font"]
    for ref in fonts.values():
        font = ref.get_object()
        assert font["/Subtype"] == "/Type0"
        assert font["/Encoding"] == "/Identity-H"  # what every extractor decodes
        assert "/ToUnicode" in font
        descendant = font["/DescendantFonts"][0].get_object()
        # A subset (six capitals and "+") of Noto Sans CJK, embedded as TrueType.
        assert re.match(r"^/[A-Z]{6}\+", descendant["/BaseFont"]), descendant["/BaseFont"]
        assert "NotoSansCJK" in descendant["/BaseFont"]
        embedded = descendant["/FontDescriptor"]["/FontFile2"].get_object().get_data()
        # The subset carries the glyphs used, not the 16 MB face.
        assert 0 < len(embedded) < 300_000
    assert len(pdf) < 400_000


async def test_the_qr_code_decodes_to_the_verification_url(scenario: Scenario, server: Any) -> None:
    c = await scenario.consultation("signed")
    pdf, digest = await report_of(c.specialist, c.id)
    url = f"{server.make_url('/').origin()}/reports/verify/{c.id}?sha256={digest}"
    assert qr_codes(pdf) == [url]


async def test_a_referral_is_reported_as_one(scenario: Scenario) -> None:
    c = await scenario.consultation("referred")
    pdf, _ = await report_of(c.clinic, c.id)
    text = pdf_text(pdf)
    assert "转诊意见" in text
    assert REFERRAL["reason"] in text
    assert c.opinion is not None and c.opinion["sha256"] in flat(text)


@pytest.mark.parametrize("state", ["requested", "accepted", "ended", "cancelled"])
async def test_no_report_before_a_signature_409_naming_the_problem(
    scenario: Scenario, app: web.Application, state: str
) -> None:
    c = await scenario.consultation(state)
    resp = await download(c.clinic, c.id)
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "not_signed"
    assert "signed opinion" in error["message"]
    assert await audit_entries(app, "consultation.report") == []


async def test_everyone_who_may_see_the_consultation_may_download_and_each_is_audited(
    scenario: Scenario, app: web.Application
) -> None:
    c = await scenario.consultation("signed")
    readers = [
        c.clinic,
        c.specialist,
        await scenario.user("coord1"),
        await scenario.user("review1"),
    ]
    digests = set()
    for user in readers:
        _, digest = await report_of(user, c.id)
        digests.add(digest)
    # The same signed texts: the same report hash for everyone.
    assert len(digests) == 1
    entries = await audit_entries(app, "consultation.report")
    assert [e["actor_id"] for e in entries] == [u.account["id"] for u in readers]
    assert {e["object_id"] for e in entries} == {c.id}
    assert entries[0]["detail"]["sha256"] == digests.pop()
    assert entries[0]["detail"]["patient_id"] == c.patient_id


@pytest.mark.parametrize("outsider", ["clinic2", "county1", "resp1"])
async def test_an_outsider_gets_the_404_of_a_missing_id_and_the_probe_is_audited(
    scenario: Scenario, login_as: LoginAs, app: web.Application, outsider: str
) -> None:
    c = await scenario.consultation("signed")
    user = await login_as(outsider)
    foreign = await download(user, c.id)
    missing = await download(user, uuid.uuid4().hex)
    assert foreign.status == missing.status == 404
    assert await foreign.text() == await missing.text()
    assert await audit_entries(app, "consultation.report") == []
    denied = await audit_entries(app, "consultation.denied")
    assert [e["actor_id"] for e in denied[-2:]] == [user.account["id"]] * 2
    assert denied[-2]["object_id"] == c.id


async def verify(user: User, consultation_id: str, sha256: str | None) -> tuple[int, Any]:
    path = f"/api/consultations/{consultation_id}/report/verify"
    if sha256 is not None:
        path += f"?sha256={sha256}"
    return await user.get(path)


async def test_verification_good_wrong_and_superseded_hashes(
    scenario: Scenario, app: web.Application
) -> None:
    c = await scenario.consultation("signed")
    _, printed = await report_of(c.clinic, c.id)
    status, body = await verify(c.clinic, c.id, printed)
    assert status == 200, body
    v = body["verification"]
    assert (v["status"], v["matches"], v["current_sha256"]) == ("current", True, printed)
    assert c.opinion is not None
    assert [o["sha256"] for o in v["opinions"]] == [c.opinion["sha256"]]
    # Upper case, as a reader may type it, is the same hash.
    status, body = await verify(c.clinic, c.id, printed.upper())
    assert body["verification"]["status"] == "current"

    wrong = "0" * 64
    status, body = await verify(c.clinic, c.id, wrong)
    assert status == 200
    assert (body["verification"]["status"], body["verification"]["matches"]) == ("mismatch", False)

    # An addendum is signed later: the printed report still verifies, as superseded,
    # and the new report (which carries the addendum) is the current one.
    status, added = await c.specialist.post(
        f"{c.url}/opinion/{c.opinion['id']}/addendum", {"text": "补充：一周后复查心电图"}
    )
    assert status == 201, added
    status, body = await verify(c.specialist, c.id, printed)
    assert body["verification"]["status"] == "superseded"
    assert body["verification"]["matches"] is True
    pdf, newer = await report_of(c.clinic, c.id)
    assert newer != printed
    text = pdf_text(pdf)
    assert "补充：一周后复查心电图" in text
    assert added["opinion"]["sha256"] in flat(text)
    status, body = await verify(c.clinic, c.id, newer)
    assert body["verification"]["status"] == "current"
    assert len(body["verification"]["opinions"]) == 2

    statuses = [
        e["detail"]["status"] for e in await audit_entries(app, "consultation.report_verify")
    ]
    assert statuses == ["current", "current", "mismatch", "superseded", "current"]


async def test_verification_refuses_a_malformed_hash_and_an_unsigned_consultation(
    scenario: Scenario,
) -> None:
    c = await scenario.consultation("signed")
    for bad in (None, "", "abc", "g" * 64):
        status, body = await verify(c.clinic, c.id, bad)
        assert status == 400, (bad, body)
        assert body["error"]["fields"] == ["sha256"]
    ended = await scenario.consultation("ended")
    status, body = await verify(ended.clinic, ended.id, "0" * 64)
    assert status == 409 and body["error"]["code"] == "not_signed"


async def test_verification_without_the_right_is_the_404_of_a_missing_id(
    scenario: Scenario, login_as: LoginAs, app: web.Application
) -> None:
    c = await scenario.consultation("signed")
    _, printed = await report_of(c.clinic, c.id)
    clinic2 = await login_as("clinic2")
    foreign = await verify(clinic2, c.id, printed)
    missing = await verify(clinic2, uuid.uuid4().hex, printed)
    assert foreign[0] == missing[0] == 404
    assert foreign[1] == missing[1]
    assert "刘大爷" not in str(foreign[1])
    assert [e["actor_id"] for e in await audit_entries(app, "consultation.report_verify")] == []


async def test_the_verification_page_needs_a_login_and_the_right(
    scenario: Scenario, login_as: LoginAs, anon: Any
) -> None:
    c = await scenario.consultation("signed")
    _, printed = await report_of(c.clinic, c.id)
    path = f"/reports/verify/{c.id}?sha256={printed}"
    resp = await anon.get(path, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/login?next=")
    resp = await c.clinic.client.get(path)
    assert resp.status == 200
    html = await resp.text()
    assert "/static/js/report-verify.js" in html
    assert printed in html  # handed to the script, which asks the audited API
    assert "刘大爷" not in html  # the frame itself shows no patient data
    clinic2 = await login_as("clinic2")
    foreign = await clinic2.client.get(path)
    missing = await clinic2.client.get(f"/reports/verify/{uuid.uuid4().hex}?sha256={printed}")
    assert foreign.status == missing.status == 404


async def test_the_consultation_page_offers_the_report(scenario: Scenario) -> None:
    c = await scenario.consultation("signed")
    resp = await c.clinic.client.get(f"/consultations/{c.id}")
    html = await resp.text()
    assert f'href="/api/consultations/{c.id}/report.pdf"' in html
    assert "会诊报告单（PDF）" in html
    resp = await c.clinic.client.get(f"/consultations/{c.id}?lang=en")
    assert "Consultation report (PDF)" in await resp.text()


async def test_a_missing_font_fails_clearly_and_hands_nothing_out(
    scenario: Scenario, app: web.Application, tmp_path: Path
) -> None:
    c = await scenario.consultation("signed")
    app[REPORTS].font = tmp_path / "NotoSansCJK-Regular.ttc"
    resp = await download(c.clinic, c.id)
    assert resp.status == 503
    error = (await resp.json())["error"]
    assert error["code"] == "report_font_missing"
    assert "fonts-noto-cjk" in error["message"] and "report_font" in error["message"]
    assert await audit_entries(app, "consultation.report") == []
    # Not a font at all is refused the same way.
    (tmp_path / "fake.ttc").write_bytes(b"not a font")
    app[REPORTS].font = tmp_path / "fake.ttc"
    resp = await download(c.clinic, c.id)
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "report_font_missing"
    assert await audit_entries(app, "consultation.report") == []


class TestBehindAProxy:
    """``public_url`` names the address printed on paper, whatever the request's."""

    @pytest.fixture
    def settings(self, tmp_path: Path, demo_database: str) -> Settings:
        return make_settings(
            tmp_path, database_url=demo_database, public_url="https://consult.example.org"
        )

    async def test_the_printed_url_is_the_public_one(self, scenario: Scenario) -> None:
        c = await scenario.consultation("signed")
        pdf, digest = await report_of(c.clinic, c.id)
        url = f"https://consult.example.org/reports/verify/{c.id}?sha256={digest}"
        assert url in flat(pdf_text(pdf))
        assert qr_codes(pdf) == [url]
