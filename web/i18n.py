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

import functools
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from records.vocab import ErrorCode, EventKind

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


# One label per timeline event kind: a sentence about the actor (``name``; the
# system when nobody acted), with ``text`` for a chat line and ``title`` for a
# document. ``tests/web/test_vocabulary.py`` fails when a kind has none.
EVENT_LABELS: Mapping[EventKind, str] = {
    EventKind.REQUESTED: N_("%(name)s requested the consultation"),
    EventKind.ACCEPTED: N_("%(name)s accepted"),
    EventKind.ASSIGNED: N_("%(name)s assigned the consultation"),
    EventKind.REASSIGNED: N_("%(name)s reassigned the consultation"),
    EventKind.DECLINED: N_("%(name)s declined"),
    EventKind.CANCELLED: N_("%(name)s cancelled the request"),
    EventKind.ESCALATED: N_("Escalated: nobody accepted in time"),
    EventKind.INVITED: N_("%(name)s invited another doctor"),
    EventKind.LIVE: N_("The call started"),
    EventKind.JOINED: N_("%(name)s joined the call"),
    EventKind.REJOINED: N_("%(name)s reconnected"),
    EventKind.LEFT: N_("%(name)s left the call"),
    EventKind.CHAT: N_("%(name)s: %(text)s"),
    EventKind.ENDED: N_("%(name)s ended the call"),
    EventKind.DOCUMENT_SHARED: N_("%(name)s attached a document"),
    EventKind.DOCUMENT_OPENED: N_("%(name)s opened %(title)s"),
    EventKind.DOCUMENT_SHOWN: N_("%(name)s showed %(title)s to all"),
    EventKind.SIGNED: N_("%(name)s signed the opinion"),
    EventKind.REFERRED: N_("%(name)s referred the patient to an in-person visit"),
    EventKind.ADDENDUM: N_("%(name)s signed an addendum"),
    EventKind.RECORDING_STARTED: N_("Recording of %(name)s started"),
    EventKind.RECORDING_FINISHED: N_("Recording of %(name)s finished"),
    EventKind.RECORDING_RECOVERED: N_("Recording repaired after a server stop"),
    EventKind.RECORDING_FAILED: N_("Recording of %(name)s failed"),
    EventKind.RECORDING_INTERRUPTED: N_("%(name)s is not being recorded: the recording stopped"),
    EventKind.PRECALL_CHECKED: N_("%(name)s ran the pre-call check"),
    EventKind.COMPLETION_OVERDUE: N_("Overdue: not completed by the deadline"),
    EventKind.IDENTITY_VERIFIED: N_("%(name)s confirmed their identity to join the call"),
}

# One label per error code, for people (the server's English message is for
# logs and API clients). Codes a page can meet reuse the text it showed before;
# the call page keeps its own wording for the codes that end a join
# (``call.error.*``). ``tests/web/test_vocabulary.py`` fails when a code has none.
_AGAIN = N_("Something went wrong. Please try again.")
_CHECK_FIELDS = N_("Please check the highlighted fields.")
_BAD_MESSAGE = N_("The page sent a message the server cannot read. Reload the page.")
ERROR_LABELS: Mapping[ErrorCode, str] = {
    ErrorCode.ERROR: _AGAIN,
    ErrorCode.RECORDS_ERROR: _AGAIN,
    ErrorCode.MEDIA_ERROR: N_("Something went wrong with the audio or video."),
    ErrorCode.INTERNAL: _AGAIN,
    ErrorCode.BAD_REQUEST: _CHECK_FIELDS,
    ErrorCode.INVALID: _CHECK_FIELDS,
    ErrorCode.INVALID_FIELDS: _CHECK_FIELDS,
    ErrorCode.INVALID_JSON: N_("The request could not be read. Reload the page and try again."),
    ErrorCode.METHOD_NOT_ALLOWED: N_("This action is not available here."),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: N_("The data was sent in a form the server does not accept."),
    ErrorCode.RANGE_NOT_SATISFIABLE: N_("The requested part of the file does not exist."),
    ErrorCode.TOO_MANY_REQUESTS: N_("Too many requests; wait a moment."),
    ErrorCode.TOO_LARGE: N_("The file is too large to upload."),
    ErrorCode.UNAUTHENTICATED: N_("Your session has ended. Please sign in again."),
    ErrorCode.LOGIN_FAILED: N_("Wrong username or password."),
    ErrorCode.ACCOUNT_LOCKED: N_(
        "Too many failed attempts: this account is locked for a while. "
        "Try again later or ask the administrator."
    ),
    ErrorCode.SECOND_FACTOR_REQUIRED: N_("Enter the code of your authenticator app first."),
    ErrorCode.VERIFICATION_REQUIRED: N_(
        "Confirm your identity with your authenticator app before joining the call."
    ),
    ErrorCode.WRONG_CODE: N_("This code is wrong or was already used. Try the next code."),
    ErrorCode.BAD_ORIGIN: N_("Requests must come from this site's own pages."),
    ErrorCode.CSRF_FAILED: N_("The page is out of date. Reload it and try again."),
    ErrorCode.FORBIDDEN: N_("You are not allowed to do this."),
    ErrorCode.ROLE_FORBIDDEN: N_("Your role does not allow this."),
    ErrorCode.NOT_FOUND: N_("Not found: it may have been removed, or you may not see it."),
    ErrorCode.CONFLICT: N_("This conflicts with what is already stored."),
    ErrorCode.ILLEGAL_TRANSITION: N_(
        "This consultation has already moved on. The list is updated."
    ),
    ErrorCode.RULE_VIOLATION: N_("The rules of remote consultation do not allow this."),
    ErrorCode.PRACTICE_TOO_SHORT: N_(
        "Remote consultations require at least 3 years of independent clinical "
        "practice. Ask the consultation centre to assign this request."
    ),
    ErrorCode.CONSENT_REQUIRED: N_("The patient's consent is required first."),
    ErrorCode.ALREADY_WITHDRAWN: N_("This consent was already withdrawn."),
    ErrorCode.UNKNOWN_DEPARTMENT: N_("Choose a department."),
    ErrorCode.UNKNOWN_SPECIALIST: N_("That specialist does not serve this department."),
    ErrorCode.UNKNOWN_ACCOUNT: N_("No doctor has this username."),
    ErrorCode.ADDRESSED_TO_OTHER: N_("This request is addressed to another specialist."),
    ErrorCode.NOT_PARTICIPANT: N_("You are not a participant of this consultation."),
    ErrorCode.ALREADY_PARTICIPANT: N_("This doctor already takes part in the consultation."),
    ErrorCode.NOT_JOINABLE: N_(
        "This consultation cannot be joined now: it is not accepted yet, or already over."
    ),
    ErrorCode.CALL_FULL: N_("The call is full (at most four participants)."),
    ErrorCode.NOT_ASSIGNED: N_("Only the assigned specialist signs the opinion."),
    ErrorCode.NOT_SIGNED: N_("The opinion is not signed yet."),
    ErrorCode.NOT_AUTHOR: N_("Only the author of the opinion can add to it."),
    ErrorCode.NO_AGREEMENT: N_(
        "Your institution has no agreement with this hospital: ask your administrator."
    ),
    ErrorCode.PASSWORD_CHANGE_REQUIRED: N_("Choose a new password first."),
    ErrorCode.PASSWORD_TOO_WEAK: N_(
        "Choose a password of at least 8 characters, other than the old one and the username."
    ),
    ErrorCode.IMPORT_INVALID: N_(
        "The staff list has problems; nothing was stored. Correct the rows shown and try again."
    ),
    ErrorCode.UNSUPPORTED_TYPE: N_(
        "This kind of file cannot be shared: use PDF, JPEG, PNG, DICOM or plain text."
    ),
    ErrorCode.TYPE_MISMATCH: N_("The file's content does not match its type."),
    ErrorCode.INVALID_IMAGE: N_("The picture is damaged or not a real JPEG/PNG file."),
    ErrorCode.INVALID_DICOM: N_("The DICOM file is damaged or not a DICOM file."),
    ErrorCode.INVALID_PDF: N_("The PDF file is damaged, has no pages or is password-protected."),
    ErrorCode.DECODED_TOO_LARGE: N_(
        "The file would be too large once decompressed; it was not stored."
    ),
    ErrorCode.MALWARE_FOUND: N_(
        "The file contains malware; it was not stored and has been reported."
    ),
    ErrorCode.SCAN_UNAVAILABLE: N_("The malware scanner is not available; try again later."),
    ErrorCode.INVALID_FHIR: N_("The imported records are not a valid FHIR R4 Bundle."),
    ErrorCode.PATIENT_MISMATCH: N_("The imported records are about another patient."),
    ErrorCode.PACS_NOT_CONFIGURED: N_(
        "No regional PACS is configured on this server. Tell the administrator."
    ),
    ErrorCode.PACS_UNREACHABLE: N_("The regional PACS cannot be reached; try again later."),
    ErrorCode.PACS_REFUSED: N_(
        "The regional PACS refused this server's credentials. Tell the administrator."
    ),
    ErrorCode.PACS_TIMEOUT: N_("The regional PACS did not answer in time; try again later."),
    ErrorCode.PACS_BAD_ANSWER: N_("The regional PACS sent an answer that cannot be used."),
    ErrorCode.FHIR_SERVER_UNAVAILABLE: N_(
        "The hospital's FHIR server is not configured or did not answer; try again later."
    ),
    ErrorCode.REPORT_FONT_MISSING: N_(
        "The report cannot be made: the server lacks its Chinese font. Tell the administrator."
    ),
    ErrorCode.RECORDING_UNAVAILABLE: N_("Recording is not available."),
    ErrorCode.RECORDING_NOT_CONSENTED: N_(
        "Not recorded: the patient did not consent to recording."
    ),
    ErrorCode.RECORDING_FAILED: N_("Recording is not running; the call goes on."),
    ErrorCode.ALREADY_RECORDING: N_("This participant is already being recorded."),
    ErrorCode.NOT_RECORDING: N_("Nothing is being recorded."),
    ErrorCode.FILE_MISSING: N_("The recording file is missing from the server."),
    ErrorCode.RETENTION_NOT_REACHED: N_("This recording must be kept until its retention date."),
    ErrorCode.BAD_MESSAGE: _BAD_MESSAGE,
    ErrorCode.NOT_AN_OBJECT: _BAD_MESSAGE,
    ErrorCode.UNKNOWN_TYPE: _BAD_MESSAGE,
    ErrorCode.UNKNOWN_FIELD: _BAD_MESSAGE,
    ErrorCode.MISSING_FIELD: _BAD_MESSAGE,
    ErrorCode.INVALID_FIELD: _BAD_MESSAGE,
    ErrorCode.FIELD_TOO_LONG: N_("The text is too long."),
    ErrorCode.NOT_JOINED: N_("Join the call first."),
    ErrorCode.ALREADY_JOINED: N_("This window is already in the call."),
    ErrorCode.ALREADY_IN_CALL: N_("You are already in this call in another window or tab."),
    ErrorCode.UNKNOWN_PEER: N_("That participant is no longer in the call."),
    ErrorCode.CHAT_NOT_STORED: N_("The message could not be saved to the record."),
    ErrorCode.END_NOT_STORED: N_(
        "The end of the call could not be saved yet; the server keeps trying."
    ),
    ErrorCode.AUDIT_CHAIN_BROKEN: N_("The audit log does not verify: tell the administrator."),
    ErrorCode.AIORTC_SEAM_BROKEN: N_(
        "The recorder does not work with the installed media library: tell the administrator."
    ),
    ErrorCode.STORAGE_FULL: N_(
        "The server's storage is full, so nothing can be opened or saved: tell the administrator."
    ),
}


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
    "label.all": N_("All"),
    "action.save": N_("Save"),
    "action.create_account": N_("Create account"),
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
    # a consultation's clock (signaling/workflow/deadlines.py)
    "deadline.accept_left": N_("%(time)s left to accept"),
    "deadline.complete_left": N_("%(time)s left to complete"),
    "deadline.accept_overdue": N_("Acceptance overdue by %(time)s"),
    "deadline.complete_overdue": N_("Completion overdue by %(time)s"),
    "deadline.due_at": N_("Deadline: %(when)s"),
    "duration.days": N_("%(d)s d"),
    "duration.days_hours": N_("%(d)s d %(h)s h"),
    "duration.hours": N_("%(h)s h"),
    "duration.hours_minutes": N_("%(h)s h %(m)s min"),
    "duration.minutes": N_("%(m)s min"),
    "push.overdue": N_("A consultation has passed its deadline."),
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
    # errors the page scripts name themselves (no server code)
    "error.csrf": N_("The page is out of date. Reload it and try again."),
    "error.rate_limited": N_("Too many requests; wait a moment."),
    "error.network": N_("The server cannot be reached. Check the network and try again."),
    "error.unknown": N_("Something went wrong. Please try again."),
    # one label per timeline event and per error code (below)
    **{f"event.{kind}": msgid for kind, msgid in EVENT_LABELS.items()},
    **{f"error.{code}": msgid for code, msgid in ERROR_LABELS.items()},
}


def load_translations(locale: str, locale_dir: Path = LOCALE_DIR) -> NullTranslations:
    """Compile ``<locale_dir>/<locale>/LC_MESSAGES/messages.po`` in memory.

    A missing catalog gives ``NullTranslations`` (the English msgids).
    """
    po_path = locale_dir / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po_path.exists():
        return NullTranslations()
    stat = po_path.stat()
    mo = _compile(po_path, locale, stat.st_mtime_ns, stat.st_size)
    return Translations(io.BytesIO(mo), domain=DOMAIN)


@functools.lru_cache(maxsize=16)
def _compile(po_path: Path, locale: str, mtime_ns: int, size: int) -> bytes:
    """The ``.mo`` bytes of one catalog, compiled once per process and file version.

    Parsing a ``.po`` file costs tens of milliseconds, paid by every
    ``create_app``: the test suite makes an app per test. An edited file (a new
    mtime or size) is compiled again.
    """
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=locale, domain=DOMAIN)
    buf = io.BytesIO()
    # Fuzzy entries are guesses by msgmerge: never show them to users.
    write_mo(buf, catalog, use_fuzzy=False)
    return buf.getvalue()


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
            # The page's strings and data as UTF-8, not \uXXXX escapes: a
            # Chinese page's HTML is a quarter smaller (the replay page's 28.3 KB
            # became 21.4 KB), and a township link carries every byte. Still safe
            # inside <script>: tojson escapes <, >, & and ' whatever this says.
            env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
            # newstyle gettext: autoescaping and %(name)s formatting inside _().
            env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
            self._by_locale[locale] = Localizer(locale, translations, env)

    def choose(self, cookie: str | None, default_locale: str) -> Localizer:
        """The localizer for a request: its ``tc_lang`` cookie if known, else the default."""
        if cookie in self._by_locale:
            return self._by_locale[cookie]
        return self._by_locale[default_locale]
