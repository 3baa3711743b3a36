"""The page layout of the consultation report (``records.report_pdf``), on fpdf2.

A module of its own so that only making a report imports fpdf2 (with fontTools,
about 0.3 s): ``report_pdf``'s digests and checks are used on every request
that touches a report, and the module is imported by every process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import segno
from fpdf import FPDF
from fpdf.enums import TableCellFillMode, XPos, YPos
from fpdf.fonts import FontFace
from fpdf.util import Padding

from records.models import Account, Event, Opinion
from records.report_pdf import (
    BEIJING,
    DISCLAIMER,
    FIELDS,
    HOW_TO_VERIFY,
    KIND,
    SEX,
    SIGNED_KINDS,
    TITLE,
    URGENCY,
    ReportData,
    beijing,
    signing_order,
)

FONT = "cjk"
MARGIN = 16.0
QR_SIZE = 28.0
INK = (34, 34, 34)
MUTED = (110, 110, 110)
RULE = (170, 170, 170)
SHADE = (242, 244, 247)


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


class Layout:
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
