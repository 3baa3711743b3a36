"""The verification page a consultation report's QR code leads to.

``/reports/verify/{consultation_id}?sha256=...`` is printed on every report (and
encoded in its QR code). Like the other pages it is a frame: it needs a login
(the login page brings the reader back), answers 404 exactly as for an unknown
id to anyone who may not see the consultation, and its script
(``report-verify.js``) asks the audited API whether the printed SHA-256 matches
what the server keeps, showing the signed texts to compare with the paper.
"""

from __future__ import annotations

from aiohttp import web

from web.i18n import N_
from web.pages import _frame, _require_session, _switch_language, render

# What only the verification page's script shows.
VERIFY_STRINGS: dict[str, str] = {
    "verify.checking": N_("Checking the report…"),
    "verify.current": N_(
        "The report matches: its SHA-256 is that of the signed texts kept for this consultation."
    ),
    "verify.superseded": N_(
        "The report matches what was signed when it was printed, but an addendum has been "
        "signed since: download the current report."
    ),
    "verify.mismatch": N_(
        "The report does NOT match: no report of this consultation's signed texts has this "
        "SHA-256. Do not rely on the paper; check the consultation."
    ),
    "verify.missing": N_("The link carries no SHA-256: scan the report's QR code again."),
    "verify.not_signed": N_("This consultation has no signed opinion: no report of it exists."),
    "verify.not_found": N_("This consultation was not found."),
    "verify.printed": N_("SHA-256 on the report"),
    "verify.stored": N_("SHA-256 of the current report"),
    "verify.signed_by": N_("Signed by %(name)s, %(time)s"),
    "verify.kind.opinion": N_("Consultation opinion"),
    "verify.kind.referral": N_("Referral to an in-person visit"),
    "verify.kind.addendum": N_("Addendum"),
}


def setup(app: web.Application) -> None:
    """Add the page's route (``create_app`` calls it after ``setup_pages``)."""
    app.router.add_get("/reports/verify/{consultation_id}", verify_page, name="report-verify")


async def verify_page(request: web.Request) -> web.StreamResponse:
    """Whether a printed consultation report matches the signed record."""
    _switch_language(request)
    session = await _require_session(request)
    frame = await _frame(request)
    return await render(
        request,
        "report_verify.html",
        page="report-verify",
        session=session,
        page_data={
            "consultation_id": frame.consultation.id,
            "sha256": request.query.get("sha256", ""),
        },
        extra_strings=VERIFY_STRINGS,
    )
