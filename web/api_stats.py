"""API of the medical-affairs statistics: the figures as JSON, CSV and XLSX.

The three answers are made from one ``Stats`` (``signaling/workflow/stats.py``
defines every figure): JSON for the page, and the same numbers as tables
(``stats_tables``) for the downloads, with headers in the request's language.
Every request is audited by the service, the downloads with their format.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from aiohttp import web

from records.workdays import CHINA
from signaling.errors import Invalid
from signaling.workflow.stats import (
    COMPLIANCE,
    OUTCOMES,
    TIMES,
    Duration,
    Group,
    Share,
    Stats,
    StatsQuery,
    last_twelve_months,
)
from web.auth import actor
from web.i18n import JS_STRINGS
from web.keys import CLOCK, STATS
from web.openapi import Route
from web.pages import localizer
from web.stats_strings import STATS_STRINGS

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID = re.compile(r"^[0-9a-f]{32}$")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Cell = str | int | float | None


def _day(request: web.Request, name: str) -> date | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    try:
        if not _DAY.match(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{name} must be a date written YYYY-MM-DD", fields=(name,)) from None


def _id(request: web.Request, name: str) -> str | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if not _ID.match(value):
        raise Invalid(f"{name} must be an id (32 hexadecimal digits)", fields=(name,))
    return value


def parse_query(request: web.Request) -> StatsQuery:
    """The range and filters of ``?from=&to=&department_id=&institution_id=&urgency=``;
    without a range, the last twelve months (days in Beijing time)."""
    first, last = _day(request, "from"), _day(request, "to")
    last = last or request.app[CLOCK].now().astimezone(CHINA).date()
    return StatsQuery(
        first_day=first or last_twelve_months(last)[0],
        last_day=last,
        department_id=_id(request, "department_id"),
        requesting_institution_id=_id(request, "institution_id"),
        urgency=request.query.get("urgency", "").strip() or None,
    )


def _share(s: Share) -> dict[str, Any]:
    return {"count": s.count, "of": s.of, "rate": s.rate}


def _duration(d: Duration) -> dict[str, Any]:
    return {"count": d.count, "median_hours": d.median_hours, "p90_hours": d.p90_hours}


def _group(g: Group) -> dict[str, Any]:
    return {"id": g.key, "name": g.name, "institution": g.institution, "count": g.count}


def stats_json(s: Stats) -> dict[str, Any]:
    """Every figure, as the page and API clients read them."""
    q = s.query
    return {
        "from": q.first_day.isoformat(),
        "to": q.last_day.isoformat(),
        "filters": {
            "department_id": q.department_id,
            "institution_id": q.requesting_institution_id,
            "urgency": q.urgency,
            "names": s.filter_names,
        },
        "scope": {"institution_id": s.scope},
        "generated_at": s.generated_at.isoformat(),
        "total": s.total,
        "by_month": [
            {"month": m.month, "by_urgency": m.by_urgency, "total": m.total} for m in s.by_month
        ],
        "by_urgency": {g.key: g.count for g in s.by_urgency},
        "by_department": [_group(g) for g in s.by_department],
        "by_institution": [
            {"id": g.key, "name": g.name, "count": g.count} for g in s.by_institution
        ],
        "outcomes": {k: _share(v) for k, v in s.outcomes.items()},
        "decline_reasons": [{"reason": g.name, "count": g.count} for g in s.decline_reasons],
        "cancel_reasons": [{"reason": g.name, "count": g.count} for g in s.cancel_reasons],
        "times": {k: _duration(v) for k, v in s.times.items()},
        "compliance": {k: _share(v) for k, v in s.compliance.items()},
        "recording": _share(s.recording),
    }


@dataclass(frozen=True)
class Table:
    """One section of an export: a title, a header row, and rows of cells."""

    key: str
    title: str
    header: list[str]
    rows: list[list[Cell]]


def stats_tables(s: Stats, gettext: Any) -> list[Table]:
    """The figures as tables, labelled in one language (the exports' content)."""

    def label(key: str) -> str:
        msgid = STATS_STRINGS.get(key) or JS_STRINGS[key]
        return str(gettext(msgid))

    q = s.query
    all_ = label("stats.all")

    def _named(s: Stats, key: str, value: str | None) -> str:
        """A filter as people read it: the name, else the id as given, else "all"."""
        return s.filter_names.get(key) or value or all_

    urgencies = [g.key for g in s.by_urgency]
    return [
        Table(
            "summary",
            label("stats.summary"),
            [label("stats.summary"), ""],
            [
                [label("stats.from"), q.first_day.isoformat()],
                [label("stats.to"), q.last_day.isoformat()],
                [label("stats.filter.department"), _named(s, "department", q.department_id)],
                [
                    label("stats.filter.institution"),
                    _named(s, "institution", q.requesting_institution_id),
                ],
                [
                    label("stats.filter.urgency"),
                    label(f"urgency.{q.urgency}") if q.urgency else all_,
                ],
                [label("stats.generated"), s.generated_at.isoformat()],
                [label("stats.total"), s.total],
            ],
        ),
        Table(
            "by_month",
            label("stats.by_month"),
            [
                label("stats.month"),
                *(label(f"urgency.{u}") for u in urgencies),
                label("stats.total_col"),
            ],
            [[m.month, *(m.by_urgency[u] for u in urgencies), m.total] for m in s.by_month],
        ),
        Table(
            "by_department",
            label("stats.by_department"),
            [label("stats.department"), label("stats.hospital"), label("stats.count")],
            [[g.name, g.institution, g.count] for g in s.by_department],
        ),
        Table(
            "by_institution",
            label("stats.by_institution"),
            [label("stats.institution"), label("stats.count")],
            [[g.name, g.count] for g in s.by_institution],
        ),
        Table(
            "by_urgency",
            label("stats.by_urgency"),
            [label("stats.urgency"), label("stats.count")],
            [[label(f"urgency.{g.key}"), g.count] for g in s.by_urgency],
        ),
        Table(
            "outcomes",
            label("stats.outcomes"),
            [label("stats.outcome"), label("stats.count"), label("stats.of"), label("stats.rate")],
            [
                [label(f"stats.outcome.{k}"), v.count, v.of, v.rate]
                for k in OUTCOMES
                for v in [s.outcomes[k]]
            ],
        ),
        Table(
            "decline_reasons",
            label("stats.decline_reasons"),
            [label("stats.reason"), label("stats.count")],
            [[g.name, g.count] for g in s.decline_reasons],
        ),
        Table(
            "cancel_reasons",
            label("stats.cancel_reasons"),
            [label("stats.reason"), label("stats.count")],
            [[g.name, g.count] for g in s.cancel_reasons],
        ),
        Table(
            "times",
            label("stats.times"),
            [label("stats.time"), label("stats.count"), label("stats.median"), label("stats.p90")],
            [
                [label(f"stats.time.{k}"), d.count, d.median_hours, d.p90_hours]
                for k in TIMES
                for d in [s.times[k]]
            ],
        ),
        Table(
            "compliance",
            label("stats.compliance"),
            [
                label("stats.deadline"),
                label("stats.in_time"),
                label("stats.due"),
                label("stats.rate"),
            ],
            [
                [label(f"stats.compliance.{k}"), v.count, v.of, v.rate]
                for k in COMPLIANCE
                for v in [s.compliance[k]]
            ],
        ),
        Table(
            "recording",
            label("stats.recording"),
            [label("stats.with_call"), label("stats.recorded"), label("stats.rate")],
            [[s.recording.of, s.recording.count, s.recording.rate]],
        ),
    ]


def stats_csv(tables: list[Table]) -> bytes:
    """The tables one after another (title row, header, rows, a blank line), UTF-8
    with a byte-order mark so that Excel opens the Chinese text correctly."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for table in tables:
        writer.writerow([table.title])
        writer.writerow(table.header)
        writer.writerows(["" if c is None else c for c in row] for row in table.rows)
        writer.writerow([])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# Excel refuses these in sheet names, and names longer than 31 characters.
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")
RATE_TABLES = frozenset({"outcomes", "compliance", "recording"})


def stats_xlsx(tables: list[Table]) -> bytes:
    """One worksheet per table (header in bold, rates formatted as percentages)."""
    # Imported here: openpyxl takes ~0.3 s to import, paid by every process that
    # imports the app (each command-line run, each test server) and needed only
    # for this download.
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    first = True
    for table in tables:
        sheet = book.active if first and book.active is not None else book.create_sheet()
        first = False
        sheet.title = _SHEET_BAD.sub(" ", table.title)[:31]
        sheet.append(table.header)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            sheet.append(row)
            if table.key in RATE_TABLES:  # the last column is a rate
                sheet.cell(row=sheet.max_row, column=len(row)).number_format = "0.00%"
        for i, header in enumerate(table.header):
            width = max([len(str(header))] + [len(str(r[i])) for r in table.rows if i < len(r)])
            # CJK characters are about twice as wide as Latin ones.
            sheet.column_dimensions[get_column_letter(i + 1)].width = min(max(width * 1.8, 10), 60)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _filename(s: Stats, ext: str) -> str:
    return f"teleconsult-stats-{s.query.first_day.isoformat()}_{s.query.last_day.isoformat()}.{ext}"


def _download(body: bytes, content_type: str, filename: str) -> web.Response:
    return web.Response(
        body=body,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def stats(request: web.Request) -> web.StreamResponse:
    """The medical-affairs figures for a range of request dates (audited)."""
    result = await request.app[STATS].stats(actor(request), parse_query(request))
    return web.json_response({"stats": stats_json(result)})


async def stats_csv_download(request: web.Request) -> web.StreamResponse:
    """The same figures as CSV, headers in the request's language (audited)."""
    result = await request.app[STATS].stats(actor(request), parse_query(request), fmt="csv")
    body = stats_csv(stats_tables(result, localizer(request).gettext))
    return _download(body, "text/csv; charset=utf-8", _filename(result, "csv"))


async def stats_xlsx_download(request: web.Request) -> web.StreamResponse:
    """The same figures as an Excel workbook, one sheet per table (audited)."""
    result = await request.app[STATS].stats(actor(request), parse_query(request), fmt="xlsx")
    body = stats_xlsx(stats_tables(result, localizer(request).gettext))
    return _download(body, XLSX, _filename(result, "xlsx"))


DATE: dict[str, Any] = {"type": "string", "format": "date"}
URGENCY: dict[str, Any] = {"type": "string", "enum": ["emergency", "urgent", "routine"]}
ID_QUERY: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
QUERY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("from", DATE),
    ("to", DATE),
    ("department_id", ID_QUERY),
    ("institution_id", ID_QUERY),
    ("urgency", URGENCY),
)
ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/stats", stats, "Medical-affairs statistics", tag="stats", query=QUERY),
    Route(
        "GET",
        "/api/stats.csv",
        stats_csv_download,
        "Medical-affairs statistics as CSV",
        tag="stats",
        query=QUERY,
    ),
    Route(
        "GET",
        "/api/stats.xlsx",
        stats_xlsx_download,
        "Medical-affairs statistics as XLSX",
        tag="stats",
        query=QUERY,
    ),
)
