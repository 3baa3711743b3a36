"""The medical-affairs statistics (``/api/stats``, ``.csv``, ``.xlsx``) against an
independent count.

A year of history (``tests/stats_history.py``: 320 consultations, two
hospitals, every outcome) is written with the real schema; each figure of the
API is then counted again here from plain selects of the tables, in Python,
with the definitions of ``signaling/workflow/stats.py`` (the deadlines are
``signaling.workflow.deadlines``'s, which the view must reuse, not restate).
The CSV and XLSX downloads are read back and must hold the JSON's numbers.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from math import ceil
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from aiohttp import web

from records.schema import (
    audit_log,
    consultation_events,
    consultations,
    opinions,
    recordings,
)
from signaling.workflow.deadlines import Deadlines
from web.keys import DB

from ..conftest import T0, LoginAs
from ..stats_history import History, make_history

CST = timedelta(hours=8)
FIRST, LAST = date(2025, 11, 1), date(2026, 11, 30)
RANGE = f"from={FIRST.isoformat()}&to={LAST.isoformat()}"
EMERGENCIES = ("emergency", "urgent")


@pytest.fixture
async def history(app: web.Application, server: Any) -> History:
    return await make_history(app[DB], now=T0, start=datetime(2025, 11, 1, tzinfo=UTC))


def _nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[ceil(Fraction(percent * len(ordered), 100)) - 1]


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


async def independent(
    app: web.Application,
    *,
    hospital: str | None,
    first: date = FIRST,
    last: date = LAST,
    department: str | None = None,
    institution: str | None = None,
    urgency: str | None = None,
) -> dict[str, Any]:
    """Every figure, counted from the rows themselves."""
    since = datetime(first.year, first.month, first.day, tzinfo=UTC) - CST
    until = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1) - CST
    async with app[DB].read() as conn:
        rows = [r._asdict() for r in await conn.execute(sa.select(consultations))]
        events = list(await conn.execute(sa.select(consultation_events)))
        signed = list(await conn.execute(sa.select(opinions)))
        legs = list(await conn.execute(sa.select(recordings)))
    chosen = [
        r
        for r in rows
        if since <= r["created_at"] < until
        and (hospital is None or r["consulted_institution_id"] == hospital)
        and (department is None or r["department_id"] == department)
        and (institution is None or r["requesting_institution_id"] == institution)
        and (urgency is None or r["urgency"] == urgency)
    ]
    ids = {r["id"] for r in chosen}

    def first_at(cid: str, *kinds: str) -> datetime | None:
        times = [e.at for e in events if e.consultation_id == cid and e.kind in kinds]
        return min(times) if times else None

    total = len(chosen)
    months: dict[str, Counter[str]] = {}
    for r in chosen:
        months.setdefault((r["created_at"] + CST).strftime("%Y-%m"), Counter())[r["urgency"]] += 1
    accepted = {r["id"] for r in chosen if first_at(r["id"], "accepted", "assigned")}
    declined = [r for r in chosen if r["state"] == "declined"]
    cancelled = [r for r in chosen if r["state"] == "cancelled"]
    waiting = [r for r in chosen if r["state"] in ("requested", "escalated")]
    cancel_reason = {
        e.consultation_id: e.data["reason"]
        for e in events
        if e.kind == "cancelled" and e.consultation_id in ids
    }
    completed = {}
    for o in signed:
        if o.consultation_id in ids and o.kind in ("opinion", "referral"):
            prev = completed.get(o.consultation_id)
            completed[o.consultation_id] = min(prev, o.signed_at) if prev else o.signed_at

    def hours(ends: dict[str, datetime | None]) -> dict[str, Any]:
        spans = [
            (ends[r["id"]] - r["created_at"]).total_seconds()  # type: ignore[operator]
            for r in chosen
            if ends.get(r["id"])
        ]
        if not spans:
            return {"count": 0, "median_hours": None, "p90_hours": None}
        return {
            "count": len(spans),
            "median_hours": round(_nearest_rank(spans, 50) / 3600, 2),
            "p90_hours": round(_nearest_rank(spans, 90) / 3600, 2),
        }

    rules = Deadlines()
    now = T0
    compliance = {"scheduled_accept": [0, 0], "routine_complete": [0, 0], "emergency": [0, 0]}

    class Req:
        def __init__(self, r: dict[str, Any]) -> None:
            self.urgency, self.created_at = r["urgency"], r["created_at"]

    for r in chosen:
        req = Req(r)
        acc = first_at(r["id"], "accepted", "assigned")
        done = completed.get(r["id"])
        closed = first_at(r["id"], "declined", "cancelled") or now
        if r["urgency"] in EMERGENCIES:
            due = rules.complete_by(req)
            if done is not None or due < closed:
                compliance["emergency"][1] += 1
                ok = done is not None and done <= due
                ok = ok and acc is not None and acc <= rules.accept_by(req)
                compliance["emergency"][0] += ok
            continue
        for key, met, due in (
            ("scheduled_accept", acc, rules.accept_by(req)),
            ("routine_complete", done, rules.complete_by(req)),
        ):
            if met is not None or due < closed:
                compliance[key][1] += 1
                compliance[key][0] += met is not None and met <= due
    with_call = [r["id"] for r in chosen if first_at(r["id"], "live")]
    covered = 0
    for cid in with_call:
        mine = [leg.status for leg in legs if leg.consultation_id == cid]
        gaps = first_at(cid, "recording_interrupted", "recording_failed")
        if mine and all(s in ("finished", "purged") for s in mine) and gaps is None:
            covered += 1
    month_keys = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        month_keys.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)

    def share(n: int, d: int) -> dict[str, Any]:
        return {"count": n, "of": d, "rate": _rate(n, d)}

    def tally(texts: list[str]) -> list[dict[str, Any]]:
        counts = Counter(t.strip() for t in texts)
        return [
            {"reason": t, "count": n}
            for t, n in sorted(counts.items(), key=lambda i: (-i[1], i[0]))
        ]

    return {
        "total": total,
        "by_month": [
            {
                "month": k,
                "by_urgency": {u: months.get(k, Counter())[u] for u in (*EMERGENCIES, "routine")},
                "total": sum(months.get(k, Counter()).values()),
            }
            for k in month_keys
        ],
        "by_urgency": {
            u: sum(r["urgency"] == u for r in chosen) for u in (*EMERGENCIES, "routine")
        },
        "by_department": Counter(r["department_id"] for r in chosen),
        "by_institution": Counter(r["requesting_institution_id"] for r in chosen),
        "outcomes": {
            "accepted": share(len(accepted), total),
            "declined": share(len(declined), total),
            "cancelled": share(len(cancelled), total),
            "waiting": share(len(waiting), total),
        },
        "decline_reasons": tally([r["decline_reason"] or "" for r in declined]),
        "cancel_reasons": tally([cancel_reason.get(r["id"], "") for r in cancelled]),
        "times": {
            "to_accept": hours(
                {r["id"]: first_at(r["id"], "accepted", "assigned") for r in chosen}
            ),
            "to_start": hours({r["id"]: first_at(r["id"], "live") for r in chosen}),
            "to_sign": hours(dict(completed)),
        },
        "compliance": {k: share(n, d) for k, (n, d) in compliance.items()},
        "recording": share(covered, len(with_call)),
    }


def assert_same(api: dict[str, Any], counted: dict[str, Any]) -> None:
    for key in (
        "total",
        "by_month",
        "by_urgency",
        "outcomes",
        "decline_reasons",
        "cancel_reasons",
        "times",
        "compliance",
        "recording",
    ):
        assert api[key] == counted[key], key
    assert {d["id"]: d["count"] for d in api["by_department"]} == dict(counted["by_department"])
    assert {i["id"]: i["count"] for i in api["by_institution"]} == dict(counted["by_institution"])
    # Largest first, as the charts draw them.
    assert [d["count"] for d in api["by_department"]] == sorted(
        (d["count"] for d in api["by_department"]), reverse=True
    )


async def test_the_figures_equal_an_independent_count(
    app: web.Application, history: History, login_as: LoginAs
) -> None:
    admin, coord, reviewer = [await login_as(u) for u in ("admin1", "coord1", "review1")]
    # The administrator counts every hospital; the history is all there.
    status, data = await admin.get(f"/api/stats?{RANGE}")
    assert status == 200, data
    everything = data["stats"]
    assert everything["total"] == history.count
    assert_same(everything, await independent(app, hospital=None))
    # A coordinator and the quality office count their own hospital's only.
    for user in (coord, reviewer):
        status, data = await user.get(f"/api/stats?{RANGE}")
        assert status == 200, data
        own = data["stats"]
        assert 0 < own["total"] < history.count
        assert own["scope"] == {"institution_id": history.hospital}
        assert_same(own, await independent(app, hospital=history.hospital))
    # The history is varied enough for every figure to say something.
    assert all(own["outcomes"][k]["count"] > 0 for k in own["outcomes"])
    assert all(
        own["compliance"][k]["of"] > own["compliance"][k]["count"] > 0 for k in own["compliance"]
    )
    assert own["recording"]["of"] > own["recording"]["count"] > 0
    assert len(own["decline_reasons"]) > 1 and len(own["cancel_reasons"]) > 1
    # Filters, one at a time and together, and a shorter range.
    dept = history.departments["cardiology"]
    clinic = history.clinics[0]
    for query, kwargs in (
        (f"department_id={dept}", {"department": dept}),
        (f"institution_id={clinic}", {"institution": clinic}),
        ("urgency=routine", {"urgency": "routine"}),
        (
            f"department_id={dept}&institution_id={clinic}&urgency=urgent",
            {"department": dept, "institution": clinic, "urgency": "urgent"},
        ),
    ):
        status, data = await coord.get(f"/api/stats?{RANGE}&{query}")
        assert status == 200, data
        assert_same(data["stats"], await independent(app, hospital=history.hospital, **kwargs))
    short = (date(2026, 3, 15), date(2026, 6, 10))
    status, data = await coord.get(f"/api/stats?from={short[0]}&to={short[1]}")
    assert status == 200, data
    assert [m["month"] for m in data["stats"]["by_month"]] == [
        "2026-03",
        "2026-04",
        "2026-05",
        "2026-06",
    ]
    assert_same(
        data["stats"],
        await independent(app, hospital=history.hospital, first=short[0], last=short[1]),
    )
    # A department of another hospital counts nothing for this coordinator.
    status, data = await admin.get(f"/api/stats?{RANGE}")
    other = [
        d["id"]
        for d in data["stats"]["by_department"]
        if d["id"] not in history.departments.values()
    ]
    status, data = await coord.get(f"/api/stats?{RANGE}&department_id={other[0]}")
    assert status == 200 and data["stats"]["total"] == 0


async def test_default_range_is_the_last_twelve_months(history: History, login_as: LoginAs) -> None:
    coord = await login_as("coord1")
    status, data = await coord.get("/api/stats")
    assert status == 200, data
    # T0 is 23 November 2026: December 2025 to November 2026.
    assert (data["stats"]["from"], data["stats"]["to"]) == ("2025-12-01", "2026-11-23")
    assert len(data["stats"]["by_month"]) == 12


def _csv_sections(body: bytes) -> list[list[list[str]]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    sections: list[list[list[str]]] = [[]]
    for row in csv.reader(io.StringIO(text[1:])):
        if row:
            sections[-1].append(row)
        elif sections[-1]:
            sections.append([])
    return [s for s in sections if s]


def _num(cell: str) -> Any:
    """A CSV cell as the number it was written from (text that is not one stays)."""
    if cell == "":
        return None
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


# The text columns of each exported table (labels, names, reasons, months).
TEXT_COLUMNS = {
    "summary": (0,),
    "by_month": (0,),
    "by_department": (0, 1),
    "by_institution": (0,),
    "by_urgency": (0,),
    "outcomes": (0,),
    "decline_reasons": (0,),
    "cancel_reasons": (0,),
    "times": (0,),
    "compliance": (0,),
}


def _expected_rows(s: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """The numbers of each exported table, from the JSON, in table order."""
    return {
        "by_month": [[m["month"], *m["by_urgency"].values(), m["total"]] for m in s["by_month"]],
        "by_department": [[d["name"], d["institution"], d["count"]] for d in s["by_department"]],
        "by_institution": [[i["name"], i["count"]] for i in s["by_institution"]],
        "by_urgency": [[v] for v in s["by_urgency"].values()],
        "outcomes": [[o["count"], o["of"], o["rate"]] for o in s["outcomes"].values()],
        "decline_reasons": [[r["reason"], r["count"]] for r in s["decline_reasons"]],
        "cancel_reasons": [[r["reason"], r["count"]] for r in s["cancel_reasons"]],
        "times": [[t["count"], t["median_hours"], t["p90_hours"]] for t in s["times"].values()],
        "compliance": [[c["count"], c["of"], c["rate"]] for c in s["compliance"].values()],
        "recording": [[s["recording"]["of"], s["recording"]["count"], s["recording"]["rate"]]],
    }


# The exported tables, in order.
ORDER = [
    "summary",
    "by_month",
    "by_department",
    "by_institution",
    "by_urgency",
    "outcomes",
    "decline_reasons",
    "cancel_reasons",
    "times",
    "compliance",
    "recording",
]
# Tables whose first column is a translated label (compared by position instead).
LABELLED = {"by_urgency", "outcomes", "times", "compliance"}


def _compare(tables: list[tuple[str, list[str], list[list[Any]]]], s: dict[str, Any]) -> None:
    expected = _expected_rows(s)
    for key, (_title, _header, rows) in zip(ORDER, tables, strict=True):
        if key == "summary":
            assert rows[0][1] == s["from"] and rows[1][1] == s["to"]
            assert rows[-1][1] == s["total"]
            continue
        got = [row[1:] if key in LABELLED else row for row in rows]
        if key.endswith("_reasons"):  # an empty reason: "" in CSV, an empty cell in XLSX
            got = [[name or "", n] for name, n in got]
        assert got == expected[key], key


async def test_csv_and_xlsx_hold_the_same_numbers(history: History, login_as: LoginAs) -> None:
    coord = await login_as("coord1")
    query = f"{RANGE}&urgency=routine&department_id={history.departments['cardiology']}"
    status, data = await coord.get(f"/api/stats?{query}")
    assert status == 200
    s = data["stats"]
    for lang, title in (("zh_CN", "每月会诊量"), ("en", "Consultations per month")):
        await coord.client.get(f"/stats?lang={lang}")  # the language cookie
        resp = await coord.client.get(f"/api/stats.csv?{query}")
        assert resp.status == 200
        assert resp.headers["Content-Disposition"] == (
            'attachment; filename="teleconsult-stats-2025-11-01_2026-11-30.csv"'
        )
        assert resp.headers["Content-Type"].startswith("text/csv")
        sections = _csv_sections(await resp.read())
        assert sections[1][0] == [title]
        # The summary names the filters as people know them.
        assert sections[0][4][1] == "心血管内科"
        assert sections[0][5][1] == ("全部" if lang == "zh_CN" else "All")
        tables = []
        for key, sec in zip(ORDER, sections, strict=True):
            labels = TEXT_COLUMNS.get(key, ())
            rows = [[c if i in labels else _num(c) for i, c in enumerate(row)] for row in sec[2:]]
            tables.append((sec[0][0], sec[1], rows))
        _compare(tables, s)

        resp = await coord.client.get(f"/api/stats.xlsx?{query}")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
        assert "2025-11-01_2026-11-30.xlsx" in resp.headers["Content-Disposition"]
        book = openpyxl.load_workbook(io.BytesIO(await resp.read()))
        assert book.sheetnames[1] == title
        sheets = []
        for sheet in book.worksheets:
            values = [list(r) for r in sheet.iter_rows(values_only=True)]
            sheets.append((sheet.title, values[0], [[c for c in row] for row in values[1:]]))
        _compare(sheets, s)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-13-01", "from"),
        ("from=yesterday", "from"),
        ("from=20260101", "from"),
        ("to=2026-02-30", "to"),
        ("from=2026-06-01&to=2026-05-31", "to"),
        ("from=2010-01-01&to=2026-01-01", "from"),
        ("urgency=soon", "urgency"),
        ("department_id=cardiology", "department_id"),
        ("institution_id=1", "institution_id"),
    ],
)
async def test_bad_input_names_the_field(login_as: LoginAs, query: str, field: str) -> None:
    coord = await login_as("coord1")
    for path in ("/api/stats", "/api/stats.csv", "/api/stats.xlsx"):
        status, data = await coord.get(f"{path}?{query}")
        assert status == 400, (path, query, data)
        assert data["error"]["code"] == "invalid"
        assert data["error"]["fields"] == [field]


async def _audit(app: web.Application, *actions: str) -> list[Any]:
    async with app[DB].read() as conn:
        rows = await conn.execute(
            sa.select(audit_log).where(audit_log.c.action.in_(actions)).order_by(audit_log.c.seq)
        )
        return list(rows)


async def test_roles_without_the_view_are_refused_and_audited(
    app: web.Application, login_as: LoginAs, anon: Any
) -> None:
    for username in ("clinic1", "cardio1"):
        user = await login_as(username)
        for path in ("/api/stats", "/api/stats.csv", "/api/stats.xlsx"):
            status, data = await user.get(f"{path}?{RANGE}")
            assert status == 403, (username, path)
            assert data["error"]["code"] == "role_forbidden"
        # The page sends them home, and its link is not in their top bar.
        resp = await user.client.get("/stats", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/"
        home = await user.client.get("/")
        assert 'href="/stats"' not in await home.text()
    denied = await _audit(app, "stats.denied")
    assert len(denied) == 6
    assert {r.detail["format"] for r in denied} == {"json", "csv", "xlsx"}
    for path in ("/api/stats", "/api/stats.csv", "/api/stats.xlsx"):
        resp = await anon.get(path)
        assert resp.status == 401
    assert not await _audit(app, "stats.view")


async def test_every_view_and_download_is_audited(
    app: web.Application, history: History, login_as: LoginAs
) -> None:
    coord = await login_as("coord1")
    query = f"{RANGE}&urgency=urgent&institution_id={history.clinics[1]}"
    for path in ("/api/stats", "/api/stats.csv", "/api/stats.xlsx"):
        resp = await coord.client.get(f"{path}?{query}")
        assert resp.status == 200
    entries = await _audit(app, "stats.view")
    assert [e.detail["format"] for e in entries] == ["json", "csv", "xlsx"]
    for e in entries:
        assert e.actor_id == coord.account["id"]
        assert e.object_type == "stats"
        assert e.detail["first_day"] == FIRST.isoformat()
        assert e.detail["last_day"] == LAST.isoformat()
        assert e.detail["urgency"] == "urgent"
        assert e.detail["requesting_institution_id"] == history.clinics[1]


async def test_the_page_is_there_for_the_roles_that_may_see_it(login_as: LoginAs) -> None:
    for username, lang, heading in (
        ("coord1", "zh_CN", "医务统计"),
        ("review1", "en", "Medical affairs statistics"),
        ("admin1", "zh_CN", "医务统计"),
    ):
        user = await login_as(username)
        resp = await user.client.get(f"/stats?lang={lang}")
        assert resp.status == 200
        html = await resp.text()
        assert f"<h1>{heading}</h1>" in html
        assert 'href="/stats" aria-current="page"' in html
        assert "/static/js/stats.js" in html


async def test_the_supervision_export_is_offered_to_those_who_may_make_it(
    login_as: LoginAs,
) -> None:
    for username, offered in (("coord1", True), ("admin1", True), ("review1", False)):
        user = await login_as(username)
        page = await user.client.get("/stats")
        assert page.status == 200
        assert ('href="/supervision"' in await page.text()) is offered, username
        if offered:  # and the link leads to a page they may use
            assert (await user.client.get("/supervision", allow_redirects=False)).status == 200
