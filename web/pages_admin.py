"""The administrator's page (``/admin``) and the password change (``/password``).

``/admin`` is a frame like the other pages: its script (``admin.js``) reads and
writes through ``/api/admin/...``, where the role is checked and every action
audited. ``/password`` is where an account with a temporary password (new, or
reset by an administrator) is sent before anything else (``pages._require_session``).
"""

from __future__ import annotations

from aiohttp import web

from web.i18n import N_
from web.pages import _require_session, _switch_language, render

# What only the administration page's script shows.
ADMIN_STRINGS: dict[str, str] = {
    "kind.township_clinic": N_("Township clinic"),
    "kind.county_hospital": N_("County hospital"),
    "kind.specialist_hospital": N_("Specialist hospital"),
    "agreement.medical_alliance": N_("Medical alliance (医联体)"),
    "agreement.paired_support": N_("Paired support (对口支援)"),
    "agreement.active": N_("Active"),
    "agreement.ended": N_("Ended %(when)s"),
    "agreement.end": N_("End"),
    "agreement.confirm_end": N_("End this agreement? New requests between them will be refused."),
    "account.active": N_("Active"),
    "account.inactive": N_("Deactivated"),
    "account.must_change": N_("Must choose a password"),
    "account.edit": N_("Edit"),
    "account.reset": N_("Reset password"),
    "account.reset_factor": N_("Reset second factor"),
    "account.confirm_reset_factor": N_(
        "Remove the second factor of %(name)s (a lost or replaced phone)? They are signed "
        "out and set up the authenticator again at their next sign-in."
    ),
    "done.reset_factor": N_("Second factor removed."),
    "account.deactivate": N_("Deactivate"),
    "account.reactivate": N_("Reactivate"),
    "account.confirm_deactivate": N_(
        "Deactivate %(name)s? They are signed out at once and cannot sign in again."
    ),
    "account.confirm_reset": N_(
        "Reset the password of %(name)s? They are signed out and must choose a new one."
    ),
    "account.years": N_("%(years)s y"),
    "account.none": N_("No accounts match."),
    "account.editing": N_("Edit %(name)s"),
    "account.new": N_("New account"),
    "form.add": N_("Add"),
    "form.add_institution": N_("Add an institution"),
    "form.add_department": N_("Add a department"),
    "done.institution": N_("Institution saved."),
    "done.agreement": N_("Agreement saved."),
    "done.department": N_("Department saved."),
    "done.account": N_("Account saved."),
    "done.deactivated": N_("Account deactivated; their sessions have ended."),
    "done.reactivated": N_("Account reactivated."),
    "done.imported": N_("%(count)s accounts imported."),
    "import.ok": N_("All %(count)s rows are valid. Nothing is stored until you import them."),
    "import.bad": N_("%(count)s problems: nothing can be stored until every row is correct."),
    "import.row": N_("Row %(row)s"),
    "import.file": N_("The file"),
    "problem.required": N_("Required"),
    "problem.bad_username": N_("3-64 characters: a-z, 0-9, '.', '_', '-'"),
    "problem.duplicate_in_file": N_("The same username appears twice in the file"),
    "problem.username_taken": N_("An account with this username exists"),
    "problem.unknown_role": N_("Unknown role"),
    "problem.unknown_institution": N_("No institution has this name"),
    "problem.unknown_department": N_("The institution has no department with this code"),
    "problem.bad_licence": N_("A licence number has 15 digits"),
    "problem.bad_date": N_("Write the date as YYYY-MM-DD (not in the future)"),
    "problem.bad_phone": N_("Not a phone number"),
    "problem.too_long": N_("Too long"),
    "problem.unknown_column": N_("Unknown column"),
    "problem.missing_column": N_("This column is missing"),
    "problem.empty": N_("The file is empty"),
    "problem.too_many_rows": N_("Too many rows"),
    "problem.unreadable": N_("Not a CSV or XLSX file that can be read"),
    "password.shown_once": N_(
        "Temporary password for %(username)s. It is shown only now: hand it over in person. "
        "It must be changed at the first sign-in."
    ),
}

PASSWORD_STRINGS: dict[str, str] = {
    "password.mismatch": N_("The two new passwords differ."),
}


def setup(app: web.Application) -> None:
    """Add the pages' routes (``create_app`` calls it after ``setup_pages``)."""
    app.router.add_get("/admin", admin_page, name="admin")
    app.router.add_get("/password", password_page, name="password")


async def admin_page(request: web.Request) -> web.StreamResponse:
    """Institutions, agreements, departments, accounts and staff imports."""
    _switch_language(request)
    session = await _require_session(request, "admin")
    return await render(
        request, "admin.html", page="admin", session=session, extra_strings=ADMIN_STRINGS
    )


async def password_page(request: web.Request) -> web.StreamResponse:
    """Choose a new password (forced after a reset or on a new account)."""
    _switch_language(request)
    session = await _require_session(request)
    return await render(
        request,
        "password.html",
        page="password",
        session=session,
        page_data={"forced": session.account.must_change_password},
        extra_strings=PASSWORD_STRINGS,
    )
