"""Languages of the pages: gettext catalogs and one jinja2 environment per locale.

Source strings (msgids) are English; ``web/locale/<locale>/LC_MESSAGES/messages.po``
holds the translations. The ``.po`` files are compiled in memory at start-up, so no
binary ``.mo`` file is kept in the repository. Simplified Chinese (``zh_CN``) is
the default; English (``en``) falls back to the msgids.

The locale of a request is the ``tc_lang`` cookie when it names a known locale,
else ``Settings.default_locale``. Browsers in county hospitals are often set to
English by whoever installed the PC, so ``Accept-Language`` is deliberately not
consulted: the deployment's default is a better guess than the browser's.

Strings the browser needs (state names, error messages) are declared here with
``N_`` so that ``pybabel extract`` finds them, translated per request and rendered
into the page as a JSON block (see ``js_strings``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALES: tuple[str, ...] = ("zh_CN", "en")
LOCALE_COOKIE = "tc_lang"
HERE = Path(__file__).resolve().parent
LOCALE_DIR = HERE / "locale"
TEMPLATE_DIR = HERE / "templates"
DOMAIN = "messages"

# The language tag the browser uses for Intl formatting (dates, "12 minutes ago").
BCP47: Mapping[str, str] = {"zh_CN": "zh-CN", "en": "en"}


def N_(message: str) -> str:
    """Mark a string for extraction without translating it yet."""
    return message


# Everything the page scripts show that is not in a template. Keys are stable
# identifiers used by the JS; values are msgids.
JS_STRINGS: Mapping[str, str] = {
    # consultation states
    "state.requested": N_("Requested"),
    "state.escalated": N_("Escalated"),
    "state.accepted": N_("Accepted"),
    "state.live": N_("In session"),
    "state.ended": N_("Ended"),
    "state.signed": N_("Opinion signed"),
    "state.referred": N_("Referred"),
    "state.cancelled": N_("Cancelled"),
    "state.declined": N_("Declined"),
    # urgencies
    "urgency.emergency": N_("Emergency"),
    "urgency.urgent": N_("Urgent"),
    "urgency.routine": N_("Routine"),
    # roles
    "role.clinic_doctor": N_("Clinic doctor"),
    "role.specialist": N_("Specialist"),
    "role.coordinator": N_("Coordinator"),
    "role.reviewer": N_("Reviewer"),
    "role.admin": N_("Administrator"),
    # patients
    "sex.male": N_("Male"),
    "sex.female": N_("Female"),
    "sex.other": N_("Other"),
    "relationship.self": N_("Self"),
    "relationship.guardian": N_("Guardian"),
    "relationship.spouse": N_("Spouse"),
    "relationship.child": N_("Child"),
    "relationship.other": N_("Other relative"),
    "age": N_("%(age)s y"),
    "consent.none": N_("No consent"),
    "consent.consultation": N_("Consultation"),
    "consent.recording": N_("Recording"),
    "consent.no_recording": N_("No recording"),
    # actions and labels used by the lists
    "action.accept": N_("Accept"),
    "action.decline": N_("Decline"),
    "action.cancel": N_("Cancel request"),
    "action.assign": N_("Assign"),
    "action.reassign": N_("Reassign"),
    "action.remove": N_("Remove"),
    "action.consent": N_("Record consent"),
    "action.request": N_("Request consultation"),
    "action.join": N_("Join video call"),
    "action.join_live": N_("Join the call in progress"),
    "action.open": N_("Details"),
    "action.write_opinion": N_("Write the opinion"),
    "label.reason": N_("Reason"),
    "label.question": N_("Clinical question"),
    "label.patient": N_("Patient"),
    "label.clinic": N_("Requesting clinic"),
    "label.department": N_("Department"),
    "label.specialist": N_("Specialist"),
    "label.requested": N_("Submitted"),
    "label.pair": N_("%(label)s: %(value)s"),
    "time.just_now": N_("just now"),
    "label.updated": N_("Updated"),
    "label.decline_reason": N_("Reason for declining"),
    "label.any_specialist": N_("Any specialist of the department"),
    "label.choose": N_("Choose…"),
    "label.choose_specialist": N_("Choose a specialist…"),
    "label.eligible": N_("eligible"),
    "label.not_eligible": N_("under 3 years of practice"),
    "label.on_duty": N_("on duty"),
    "label.years": N_("%(years)s years of practice"),
    "label.on_duty_now": N_("On duty now"),
    "label.escalated": N_("Escalated: waited too long"),
    "label.assigned_to": N_("Assigned to"),
    "label.addressed_to_you": N_("Addressed to you"),
    "label.unassigned": N_("Not yet assigned"),
    "empty.patients": N_("No patients registered yet."),
    "empty.requests": N_("No requests yet."),
    "empty.queue": N_("No requests are waiting. New ones appear here by themselves."),
    "empty.mine": N_("You have no accepted or running consultations."),
    "empty.roster": N_("Nobody is on the roster."),
    "empty.active": N_("No accepted or live consultations."),
    "confirm.cancel": N_("Cancel this consultation request?"),
    "confirm.remove": N_("Remove this roster entry?"),
    # feedback
    "done.patient": N_("Patient registered."),
    "done.consent": N_("Consent recorded."),
    "done.request": N_("Consultation requested."),
    "done.accepted": N_("Consultation accepted."),
    "done.declined": N_("Request declined."),
    "done.cancelled": N_("Request cancelled."),
    "done.assigned": N_("Consultation assigned."),
    "done.roster": N_("Roster updated."),
    "push.offline": N_("Live updates interrupted; reconnecting…"),
    "push.online": N_("Live updates on"),
    # errors by API code (the server's English message is the fallback)
    "error.login_failed": N_("Wrong username or password."),
    "error.account_locked": N_(
        "Too many failed attempts: this account is locked for a while. "
        "Try again later or ask the administrator."
    ),
    "error.practice_too_short": N_(
        "Remote consultations require at least 3 years of independent clinical "
        "practice. Ask the consultation centre to assign this request."
    ),
    "error.unauthenticated": N_("Your session has ended. Please sign in again."),
    "error.csrf": N_("The page is out of date. Reload it and try again."),
    "error.forbidden": N_("You are not allowed to do this."),
    "error.role_forbidden": N_("Your role does not allow this."),
    "error.not_found": N_("Not found: it may have been removed, or you may not see it."),
    "error.illegal_transition": N_("This consultation has already moved on. The list is updated."),
    "error.addressed_to_other": N_("This request is addressed to another specialist."),
    "error.consent_required": N_("The patient's consent is required first."),
    "error.already_withdrawn": N_("This consent was already withdrawn."),
    "error.unknown_department": N_("Choose a department."),
    "error.unknown_specialist": N_("That specialist does not serve this department."),
    "error.invalid": N_("Please check the highlighted fields."),
    "error.rate_limited": N_("Too many requests; wait a moment."),
    "error.network": N_("The server cannot be reached. Check the network and try again."),
    "error.unknown": N_("Something went wrong. Please try again."),
}


def load_translations(locale: str, locale_dir: Path = LOCALE_DIR) -> NullTranslations:
    """Compile ``<locale_dir>/<locale>/LC_MESSAGES/messages.po`` in memory.

    A missing catalog gives ``NullTranslations`` (the English msgids).
    """
    po_path = locale_dir / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po_path.exists():
        return NullTranslations()
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=locale, domain=DOMAIN)
    buf = io.BytesIO()
    # Fuzzy entries are guesses by msgmerge: never show them to users.
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


@dataclass(frozen=True)
class Localizer:
    """The translations and the jinja2 environment of one locale."""

    locale: str
    translations: NullTranslations
    env: jinja2.Environment

    @property
    def lang_tag(self) -> str:
        """The BCP 47 tag for ``<html lang>`` and ``Intl``."""
        return BCP47.get(self.locale, self.locale.replace("_", "-"))

    def gettext(self, message: str) -> str:
        """Translate one msgid."""
        return self.translations.gettext(message)

    def js_strings(self) -> dict[str, str]:
        """The translated strings the page scripts need, by key."""
        return {key: self.gettext(msgid) for key, msgid in JS_STRINGS.items()}


class I18n:
    """Every supported locale, loaded once at start-up."""

    def __init__(
        self,
        *,
        template_dir: Path = TEMPLATE_DIR,
        locale_dir: Path = LOCALE_DIR,
    ) -> None:
        """Compile the catalogs and build one autoescaping environment per locale."""
        self._by_locale: dict[str, Localizer] = {}
        loader = jinja2.FileSystemLoader(str(template_dir))
        for locale in LOCALES:
            translations = load_translations(locale, locale_dir)
            env = jinja2.Environment(
                loader=loader,
                autoescape=True,
                undefined=jinja2.StrictUndefined,
                extensions=["jinja2.ext.i18n"],
                trim_blocks=True,
                lstrip_blocks=True,
            )
            # newstyle gettext: autoescaping and %(name)s formatting inside _().
            env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
            self._by_locale[locale] = Localizer(locale, translations, env)

    def choose(self, cookie: str | None, default_locale: str) -> Localizer:
        """The localizer for a request: its ``tc_lang`` cookie if known, else the default."""
        if cookie in self._by_locale:
            return self._by_locale[cookie]
        return self._by_locale[default_locale]
