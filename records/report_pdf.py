"""The consultation report (会诊报告单): a PDF for the patient's paper record.

One A4 document per consultation with a signed opinion or referral: the request
(who asked whom, about what, how urgently, when), the patient with the resident
ID number masked, the signed opinion or referral and every signed addendum, each
with its SHA-256, the times of the consultation, and a verification block: the
report's own SHA-256 and a URL (also as a QR code) where a logged-in user who
may see the consultation checks it against what the server keeps.

The report's SHA-256 (``report_digest``) is taken over the canonical JSON of the
consultation's id, the patient's id and the signed documents it shows (id, kind,
parent, SHA-256 of the signed body, in signing order). It does not cover the
PDF's bytes (a document cannot contain its own hash); it says which signed texts
the printed page claims to carry, and every one of those is itself hashed. A
report printed before a later addendum keeps verifying, as superseded.

The labels are in Chinese, the language of the record. Times are Beijing time.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import segno
from fpdf import FPDF
from fpdf.enums import TableCellFillMode, XPos, YPos
from fpdf.fonts import FontFace
from fpdf.util import Padding

from records import report_font
from records.canonical import canonical_json
from records.models import Account, Consultation, Department, Event, Institution, Opinion, Patient

# China keeps one time zone and no daylight saving time.
BEIJING = timezone(timedelta(hours=8), "CST")
TITLE = "会诊报告单"
FONT = "cjk"

URGENCY = {"routine": "普通", "urgent": "紧急", "emergency": "急诊"}
SEX = {"male": "男", "female": "女", "other": "其他"}
KIND = {"opinion": "会诊意见", "referral": "转诊意见（建议线下面诊）", "addendum": "补充意见"}
# The fields of a signed body, in the order they are printed, with their labels.
FIELDS = {
    "opinion": (
        ("findings", "所见"),
        ("impression", "印象"),
        ("recommendations", "建议"),
        ("notes", "备注"),
    ),
    "referral": (("reason", "转诊理由"), ("department", "建议就诊科室")),
    "addendum": (("text", "补充内容"),),
}
SIGNED_KINDS = ("opinion", "referral")
DISCLAIMER = "本报告为远程会诊意见，供申请方医生参考；诊疗决定由申请方医生结合患者实际情况作出。"
HOW_TO_VERIFY = (
    "扫描二维码或在浏览器中打开校验网址，使用有权查看本会诊的账号登录，"
    "即可核对本报告与系统存档的签署内容是否一致。"
)

# Layout (millimetres, A4 portrait).
MARGIN = 16.0
QR_SIZE = 28.0
INK = (34, 34, 34)
MUTED = (110, 110, 110)
RULE = (170, 170, 170)
SHADE = (242, 244, 247)


@dataclass(frozen=True, kw_only=True)
class ReportData:
    """Everything the report shows (read by the workflow in one transaction)."""

    consultation: Consultation
    patient: Patient
    department: Department
    requesting_institution: Institution
    consulted_institution: Institution
    people: Mapping[str, Account]
    events: Sequence[Event]
    opinions: Sequence[Opinion]
    generated_at: datetime


def signing_order(opinions: Iterable[Opinion]) -> list[Opinion]:
    """Signed documents in the order they were signed (ties: the opinion first, then by id)."""
    return sorted(opinions, key=lambda o: (o.signed_at, o.kind == "addendum", o.id))


def has_signed_outcome(opinions: Iterable[Opinion]) -> bool:
    """Whether a signed opinion or referral exists (what a report needs)."""
    return any(o.kind in SIGNED_KINDS for o in opinions)


def report_digest(consultation_id: str, patient_id: str, opinions: Iterable[Opinion]) -> str:
    """The report's SHA-256 (hex) over the signed documents it shows (module docstring)."""
    signed = [
        {"id": o.id, "kind": o.kind, "parent_id": o.parent_id, "sha256": o.sha256}
        for o in signing_order(opinions)
    ]
    body = {"consultation_id": consultation_id, "patient_id": patient_id, "signed": signed}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def earlier_digests(consultation_id: str, patient_id: str, opinions: Iterable[Opinion]) -> set[str]:
    """The digests of reports printed before the latest signed documents were added."""
    ordered = signing_order(opinions)
    return {
        report_digest(consultation_id, patient_id, ordered[:n])
        for n in range(1, len(ordered))
        if has_signed_outcome(ordered[:n])
    }


def verification_url(base_url: str, consultation_id: str, digest: str) -> str:
    """Where the report's QR code leads: the verification page of this site."""
    return f"{base_url.rstrip('/')}/reports/verify/{consultation_id}?sha256={digest}"


def beijing(at: datetime | None) -> str:
    """A time as printed on the report (Beijing time, to the minute)."""
    if at is None:
        return "—"
    if at.tzinfo is None:  # stored times are UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _first(events: Iterable[Event], *kinds: str) -> datetime | None:
    return min((e.at for e in events if e.kind in kinds), default=None)


def _last(events: Iterable[Event], *kinds: str) -> datetime | None:
    return max((e.at for e in events if e.kind in kinds), default=None)


def _person(account: Account | None) -> str:
    if account is None:
        return "—"
    return f"{account.display_name}（{account.title}）" if account.title else account.display_name


def _age(birth: Any, on: datetime) -> int:
    day = on.astimezone(BEIJING).date()
    return int(day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day)))


class _Report:
    """Lays out one report on an ``FPDF`` document."""

    def __init__(self, data: ReportData, *, digest: str, url: str, font: Path) -> None:
        self.d = data
        self.digest = digest
        self.url = url
        self.pdf = FPDF(orientation="portrait", unit="mm", format="A4")
        pdf = self.pdf
        pdf.set_margins(MARGIN, MARGIN, MARGIN)
        pdf.set_auto_page_break(auto=True, margin=MARGIN + 4)
        pdf.add_font(FONT, "", font)
        pdf.set_font(FONT, size=10)
        pdf.set_text_color(*INK)
        pdf.set_draw_color(*RULE)
        pdf.set_line_width(0.2)
        pdf.set_title(TITLE)
        pdf.set_subject(f"会诊编号 {data.consultation.id}")
        pdf.set_author(data.consulted_institution.name)
        pdf.set_creator("teleconsult")
        pdf.set_lang("zh-CN")
        pdf.set_creation_date(data.generated_at)
        pdf.alias_nb_pages()
        # The footer of each page: fpdf2 calls it when a page is finished.
        pdf.footer = self._footer  # type: ignore[method-assign]

    @property
    def width(self) -> float:
        return float(self.pdf.epw)

    def build(self) -> bytes:
        self.pdf.add_page()
        self._title()
        self._facts()
        for opinion in signing_order(self.d.opinions):
            self._signed(opinion)
        self._verification()
        return bytes(self.pdf.output())

    # -- parts of the page ----------------------------------------------------------

    def _title(self) -> None:
        pdf, d = self.pdf, self.d
        pdf.set_font(FONT, size=11)
        pdf.cell(
            self.width,
            6,
            d.consulted_institution.name,
            align="C",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        pdf.set_font(FONT, size=20)
        pdf.cell(self.width, 11, TITLE, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(FONT, size=8.5)
        pdf.set_text_color(*MUTED)
        pdf.cell(
            self.width,
            5,
            f"会诊编号 {d.consultation.id}    生成时间 {beijing(d.generated_at)}（北京时间）",
            align="C",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        pdf.set_text_color(*INK)
        pdf.ln(2)
        y = pdf.get_y()
        pdf.set_draw_color(*INK)
        pdf.set_line_width(0.5)
        pdf.line(MARGIN, y, MARGIN + self.width, y)
        pdf.set_draw_color(*RULE)
        pdf.set_line_width(0.2)
        pdf.ln(3)

    def _heading(self, text: str) -> None:
        pdf = self.pdf
        if pdf.will_page_break(20):
            pdf.add_page()
        pdf.ln(1.5)
        pdf.set_font(FONT, size=12)
        pdf.cell(self.width, 6.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(FONT, size=10)

    def _table(self, rows: Sequence[Sequence[tuple[str, str]]]) -> None:
        """Label-value pairs, two pairs a row; a row of one pair spans the width."""
        pdf = self.pdf
        label = FontFace(fill_color=SHADE, color=MUTED)
        with pdf.table(
            col_widths=(16, 34, 16, 34),
            text_align="LEFT",
            first_row_as_headings=False,
            line_height=4.8,
            padding=(1.1, 2),
            cell_fill_mode=TableCellFillMode.NONE,
        ) as table:
            for pairs in rows:
                row = table.row()
                for name, value in pairs:
                    row.cell(name, style=label)
                    row.cell(value or "—", colspan=3 if len(pairs) == 1 else 1)

    def _facts(self) -> None:
        d = self.d
        c, p = d.consultation, d.patient
        events = d.events
        signed = [o for o in d.opinions if o.kind in SIGNED_KINDS]
        self._heading("患者信息")
        self._table(
            [
                [("姓名", p.name), ("性别", SEX.get(p.sex, p.sex))],
                [
                    (
                        "出生日期",
                        f"{p.birth_date.isoformat()}（{_age(p.birth_date, d.generated_at)} 岁）",
                    ),
                    # Masked as on every screen: the paper record is read by many.
                    ("身份证号", p.national_id_masked),
                ],
            ]
        )
        self._heading("会诊申请")
        self._table(
            [
                [
                    ("申请机构", d.requesting_institution.name),
                    ("申请医生", _person(d.people.get(c.requested_by))),
                ],
                [
                    ("会诊机构", d.consulted_institution.name),
                    ("会诊科室", d.department.name),
                ],
                [
                    ("紧急程度", URGENCY.get(c.urgency, c.urgency)),
                    ("申请时间", beijing(c.created_at)),
                ],
                [("申请理由", c.reason)],
                [("会诊问题", c.question)],
            ]
        )
        self._heading("会诊过程（北京时间）")
        self._table(
            [
                [
                    ("申请时间", beijing(c.created_at)),
                    ("接诊时间", beijing(_first(events, "accepted", "assigned"))),
                ],
                [
                    ("通话开始", beijing(_first(events, "live"))),
                    ("通话结束", beijing(_last(events, "ended"))),
                ],
                [
                    ("会诊专家", _person(d.people.get(c.assigned_specialist_id or ""))),
                    ("签署时间", beijing(min((o.signed_at for o in signed), default=None))),
                ],
            ]
        )

    def _signed(self, o: Opinion) -> None:
        pdf = self.pdf
        self._heading(KIND.get(o.kind, o.kind))
        for key, label in FIELDS.get(o.kind, ()):
            value = o.body.get(key)
            if not value:
                continue
            pdf.set_font(FONT, size=9)
            pdf.set_text_color(*MUTED)
            pdf.cell(self.width, 5, label, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_font(FONT, size=10.5)
            pdf.set_text_color(*INK)
            pdf.multi_cell(
                self.width, 5.4, str(value), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
            )
            pdf.ln(1)
        author = self.d.people.get(o.author_id)
        licence = f"    执业证书编号 {author.licence_no}" if author and author.licence_no else ""
        pdf.set_font(FONT, size=9)
        pdf.set_fill_color(*SHADE)
        pdf.multi_cell(
            self.width,
            5,
            f"电子签署：{_person(author)}{licence}    签署时间 {beijing(o.signed_at)}\n"
            f"签署内容 SHA-256：{o.sha256}",
            fill=True,
            align="L",
            padding=Padding(top=1.5, right=2, bottom=1.5, left=2),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        pdf.set_font(FONT, size=10)

    def _verification(self) -> None:
        pdf = self.pdf
        # The block (about 45 mm) stays together, on a page of its own if need be.
        if pdf.will_page_break(45):
            pdf.add_page()
        pdf.ln(2)
        y = pdf.get_y()
        pdf.set_draw_color(*INK)
        pdf.line(MARGIN, y, MARGIN + self.width, y)
        pdf.set_draw_color(*RULE)
        pdf.ln(2)
        top = pdf.get_y()
        self._qr(MARGIN + self.width - QR_SIZE, top, QR_SIZE)
        text_width = self.width - QR_SIZE - 6
        pdf.set_font(FONT, size=12)
        pdf.cell(text_width, 7, "报告校验", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(FONT, size=9)
        rows = (
            ("报告校验码（SHA-256）", self.digest),
            ("校验网址", self.url),
        )
        for label, value in rows:
            pdf.set_text_color(*MUTED)
            pdf.cell(text_width, 4.4, label, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_text_color(*INK)
            # Long hex and URLs break anywhere: fpdf2 wraps a word wider than the cell.
            pdf.multi_cell(text_width, 4.4, value, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(*MUTED)
        pdf.multi_cell(
            text_width, 4.4, HOW_TO_VERIFY, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        pdf.set_text_color(*INK)
        pdf.set_y(max(pdf.get_y(), top + QR_SIZE) + 2)
        pdf.set_font(FONT, size=8.5)
        pdf.set_text_color(*MUTED)
        pdf.multi_cell(self.width, 4.6, DISCLAIMER, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(*INK)

    def _qr(self, x: float, y: float, size: float) -> None:
        """The verification URL as a QR code, drawn as vector squares (sharp in print)."""
        code = segno.make(self.url, error="m", micro=False)
        matrix = [list(row) for row in code.matrix]
        quiet = 2  # modules of white around the code (more white is the page's margin)
        modules = len(matrix) + 2 * quiet
        step = size / modules
        pdf = self.pdf
        pdf.set_fill_color(255, 255, 255)
        pdf.rect(x, y, size, size, style="F")
        pdf.set_fill_color(0, 0, 0)
        for r, row in enumerate(matrix):
            c = 0
            while c < len(row):
                if not row[c]:
                    c += 1
                    continue
                start = c
                while c < len(row) and row[c]:
                    c += 1
                # One rectangle per run of dark modules (fewer drawing operations).
                pdf.rect(
                    x + (start + quiet) * step,
                    y + (r + quiet) * step,
                    (c - start) * step,
                    step,
                    style="F",
                )

    def _footer(self) -> None:
        pdf = self.pdf
        pdf.set_y(-MARGIN)
        pdf.set_font(FONT, size=8)
        pdf.set_text_color(*MUTED)
        pdf.cell(self.width / 2, 5, f"{TITLE} · 会诊编号 {self.d.consultation.id[:8]}", align="L")
        pdf.cell(self.width / 2, 5, f"第 {pdf.page_no()} 页 / 共 {{nb}} 页", align="R")
        pdf.set_text_color(*INK)


def _all_text(data: ReportData, digest: str, url: str) -> list[str]:
    """Every string the report may draw (the font subset needs each character)."""
    c, p = data.consultation, data.patient
    texts = [
        TITLE,
        DISCLAIMER,
        HOW_TO_VERIFY,
        "患者信息会诊申请过程北京时间姓名性别出生日期岁身份证号申请机构医生会诊科室紧急程度",
        "理由问题接诊通话开始结束专家签署电子执业证书编号内容报告校验码网址第页共生成",
        "（）：·—",
        *URGENCY.values(),
        *SEX.values(),
        *KIND.values(),
        *(label for fields in FIELDS.values() for _, label in fields),
        p.name,
        p.sex,
        p.national_id_masked,
        c.reason,
        c.question,
        c.urgency,
        c.id,
        data.department.name,
        data.requesting_institution.name,
        data.consulted_institution.name,
        digest,
        url,
    ]
    for account in data.people.values():
        texts += [account.display_name, account.title or "", account.licence_no or ""]
    for o in data.opinions:
        texts += [str(v) for v in o.body.values()]
    return texts


def build_report(data: ReportData, *, base_url: str, font_path: Path) -> tuple[bytes, str, str]:
    """The report as PDF bytes, with its SHA-256 and verification URL.

    Args:
        data: what the report shows; its opinions hold a signed opinion or referral.
        base_url: the site's address as people reach it (``https://host``).
        font_path: the CJK font (a ``.ttc`` collection, ``.otf`` or ``.ttf``).

    Returns:
        ``(pdf, digest, url)``.

    Raises:
        ReportFontMissing: the font file is missing or not a usable font.
    """
    c = data.consultation
    digest = report_digest(c.id, c.patient_id, data.opinions)
    url = verification_url(base_url, c.id, digest)
    font = report_font.subset_truetype(font_path, _all_text(data, digest, url))
    # fpdf2 takes a font by file name (and reads it again when it writes the PDF).
    with tempfile.TemporaryDirectory(prefix="report-font-") as tmp:
        path = Path(tmp) / "subset.ttf"
        path.write_bytes(font)
        pdf = _Report(data, digest=digest, url=url, font=path).build()
    return pdf, digest, url
