"""The supervision export page (监管数据导出): a date range, what it holds, downloads.

For the medical-affairs office: coordinators (their hospital's consultations)
and administrators (all). The page shows a count by state, the scope and the
signing key's fingerprint (what the provincial platform registers), and links
to the audited API, which makes the files. The counts are not patient data;
the files are, and only the API hands them out.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from records import supervision
from signaling.workflow.supervision import EXPORT_ROLES
from web.auth import actor
from web.i18n import N_
from web.keys import SUPERVISION
from web.pages import _require_session, _switch_language, _today, localizer, render

STATES = (
    "requested",
    "escalated",
    "accepted",
    "live",
    "ended",
    "signed",
    "referred",
    "cancelled",
    "declined",
)


def setup(app: web.Application) -> None:
    """Add the page's route (``create_app`` calls it after ``setup_pages``)."""
    app.router.add_get("/supervision", supervision_page, name="supervision")


def last_month(today: date) -> tuple[date, date]:
    """The previous calendar month: what a monthly report to the platform covers."""
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


async def supervision_page(request: web.Request) -> web.StreamResponse:
    """Pick a date range, see how many consultations it holds, download the export."""
    _switch_language(request)
    session = await _require_session(request, *EXPORT_ROLES)
    loc = localizer(request)
    today = _today(request).astimezone(supervision.BEIJING).date()
    default_from, default_to = last_month(today)
    values = {
        "from": request.query.get("from", default_from.isoformat()),
        "to": request.query.get("to", default_to.isoformat()),
    }
    error: dict[str, str] | None = None
    summary: Any = None
    links: dict[str, str] = {}
    try:
        rng = supervision.parse_range(values["from"], values["to"])
    except supervision.RangeError as exc:
        message = _MISSING if not values[exc.field] else _RANGE_ERRORS[exc.field]
        error = {
            "field": exc.field,
            "message": loc.gettext(message) % {"days": supervision.MAX_DAYS},
        }
    else:
        summary = await request.app[SUPERVISION].summary(actor(request), rng)
        query = {"from": rng.first.isoformat(), "to": rng.last.isoformat()}
        links = {
            fmt: "/api/supervision/export?" + urlencode(query | {"format": fmt})
            for fmt in ("zip", "json", "csv")
        }
    return await render(
        request,
        "supervision.html",
        page="supervision",
        session=session,
        values=values,
        error=error,
        summary=summary,
        states=[s for s in STATES if summary and summary.by_state.get(s)],
        links=links,
        today=today.isoformat(),
    )


_MISSING = N_("Enter both dates.")
_RANGE_ERRORS = {
    "from": N_("Enter the start date as a calendar date."),
    "to": N_(
        "The end date must be a calendar date on or after the start date, "
        "at most %(days)s days later."
    ),
}
