"""The medical-affairs statistics page (医务统计, ``/stats``).

A frame like the other pages: for coordinators, reviewers (the quality office)
and administrators; others are sent home and the attempt is audited. Its script
(``stats.js``) asks the audited API for the figures, draws them with the
vendored Chart.js (``static/vendor/chartjs-4.6.1``, no build step) and shows
the same numbers as tables; the download buttons fetch the CSV and XLSX of
the same range and filters. The help text on the page says how each figure is
counted, in the words of ``signaling/workflow/stats.py``.
"""

from __future__ import annotations

from aiohttp import web

from signaling.workflow.stats import STATS_ROLES
from web.pages import _institution_name, _require_session, _switch_language, render
from web.stats_strings import STATS_STRINGS


def setup(app: web.Application) -> None:
    """Add the page's route (``create_app`` calls it after ``setup_pages``)."""
    app.router.add_get("/stats", stats_page, name="stats")


async def stats_page(request: web.Request) -> web.StreamResponse:
    """Consultations per month, department, institution and urgency; rates, times,
    deadline compliance and recording coverage, with downloads."""
    _switch_language(request)
    session = await _require_session(request, *sorted(STATS_ROLES))
    account = session.account
    everyone = account.role == "admin"
    return await render(
        request,
        "stats.html",
        page="stats",
        session=session,
        page_data={
            # Coordinators and reviewers count their own hospital's consultations.
            "scope_institution_id": None if everyone else account.institution_id,
            "scope_name": "" if everyone else await _institution_name(request, account),
        },
        extra_strings=STATS_STRINGS,
    )
