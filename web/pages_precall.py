"""The pre-call check page of one consultation.

A frame like the other pages: what it measures it measures in the browser
(``precall.js``) against the API (``web/api_precall.py``), which keeps the
result. Reachable by the clinic doctors and specialists who may see the
consultation; any other role is sent home, an id they may not see is a 404.
"""

from __future__ import annotations

from aiohttp import web

from web.pages import ROLE_HOME, _frame, _require_session, _switch_language, render
from web.precall_strings import PAGE_STRINGS, RESULT_STRINGS


def setup(app: web.Application) -> None:
    """Add the page's route (``create_app`` calls it after ``setup_pages``)."""
    app.router.add_get("/consultations/{consultation_id}/precall", precall_page, name="precall")


async def precall_page(request: web.Request) -> web.StreamResponse:
    """Camera, microphone, speaker and network, checked before the call."""
    _switch_language(request)
    session = await _require_session(request, "clinic_doctor", "specialist")
    frame = await _frame(request)
    return await render(
        request,
        "precall.html",
        page="precall",
        session=session,
        page_data={
            "consultation_id": frame.consultation.id,
            "home": ROLE_HOME.get(session.account.role, "/"),
        },
        extra_strings=RESULT_STRINGS | PAGE_STRINGS,
        department=frame.department.name,
        requesting_institution=frame.requesting_institution.name,
    )
