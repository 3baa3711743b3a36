"""API of the consultation report (会诊报告单): the PDF, and the check of a printed one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from signaling.workflow.report import Verification
from web.auth import actor
from web.keys import REPORTS, SETTINGS
from web.openapi import STRING, Route
from web.payloads import opinion_json


def base_url(request: web.Request) -> str:
    """The site's address for links printed on paper: ``public_url``, else this request's."""
    configured = request.app[SETTINGS].public_url
    return configured or str(request.url.origin())


async def report_pdf(request: web.Request) -> web.StreamResponse:
    """The consultation report as a PDF, once signed (every download is audited)."""
    report = await request.app[REPORTS].pdf(
        actor(request), request.match_info["consultation_id"], base_url=base_url(request)
    )
    return web.Response(
        body=report.pdf,
        headers={
            "Content-Type": "application/pdf",
            "Content-Disposition": f'attachment; filename="{report.filename}"',
            # Patient data: never kept by a cache on the way or in the browser.
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Report-SHA256": report.sha256,
        },
    )


def verification_json(v: Verification) -> dict[str, Any]:
    """A printed report's SHA-256 against the one the server would print now."""
    return {
        "consultation_id": v.consultation_id,
        "sha256": v.given,
        "status": v.status,
        "matches": v.status != "mismatch",
        "current_sha256": v.current,
        "opinions": [opinion_json(o, v.people) for o in v.opinions],
    }


async def verify_report(request: web.Request) -> web.StreamResponse:
    """Check the SHA-256 printed on a report (``?sha256=``) against the stored signatures."""
    verification = await request.app[REPORTS].verify(
        actor(request), request.match_info["consultation_id"], request.query.get("sha256", "")
    )
    return web.json_response({"verification": verification_json(verification)})


C = "/api/consultations/{consultation_id}"
ROUTES: tuple[Route, ...] = (
    Route("GET", C + "/report.pdf", report_pdf, "The consultation report (PDF)", tag="records"),
    Route(
        "GET",
        C + "/report/verify",
        verify_report,
        "Verify a printed report's SHA-256",
        tag="records",
        query=(("sha256", STRING),),
    ),
)
