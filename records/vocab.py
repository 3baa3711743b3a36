"""The domain's closed sets of words, one ``StrEnum`` each.

Every value here is stored in a column, sent over the wire or shown to a user
through a label, so the enums are the one place that says which words exist:
``records/schema.py`` builds its CHECK constraints from them, ``web/i18n.py``
gives each event kind and error code a label in both catalogs (a test fails when
one is missing), and ``web/errors.py`` maps each error code to its HTTP status.

A ``StrEnum`` member *is* its string (``Role.ADMIN == "admin"``), so rows read
back as plain strings compare equal to the members and JSON carries the values.
Adding a member to an enum that backs a CHECK constraint needs a migration;
``tests/records/test_vocab_migration.py`` fails until there is one.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What an account does (``accounts.role``)."""

    CLINIC_DOCTOR = "clinic_doctor"
    SPECIALIST = "specialist"
    COORDINATOR = "coordinator"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class InstitutionKind(StrEnum):
    """The inviting side (clinics, county hospitals) and the invited side."""

    TOWNSHIP_CLINIC = "township_clinic"
    COUNTY_HOSPITAL = "county_hospital"
    SPECIALIST_HOSPITAL = "specialist_hospital"


class AgreementKind(StrEnum):
    """Why one institution may ask another (``agreements.kind``)."""

    # 医联体: the county medical community (a hospital and its clinics)
    MEDICAL_ALLIANCE = "medical_alliance"
    # 对口支援: a city or provincial hospital paired with a county to support it
    PAIRED_SUPPORT = "paired_support"


class Urgency(StrEnum):
    """How soon a consultation is needed (``consultations.urgency``)."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


class ConsultationState(StrEnum):
    """Where a consultation is (``consultations.state``).

    The transitions between them are in ``signaling/lifecycle.py``.
    """

    REQUESTED = "requested"
    ESCALATED = "escalated"
    ACCEPTED = "accepted"
    LIVE = "live"
    ENDED = "ended"
    SIGNED = "signed"
    REFERRED = "referred"
    CANCELLED = "cancelled"
    DECLINED = "declined"


class EventKind(StrEnum):
    """An entry of a consultation's timeline (``consultation_events.kind``)."""

    # the workflow (one per lifecycle step; ``reassigned`` when a coordinator
    # moves an accepted consultation to another specialist)
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    ASSIGNED = "assigned"
    REASSIGNED = "reassigned"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    ESCALATED = "escalated"
    INVITED = "invited"
    # the call
    LIVE = "live"
    JOINED = "joined"
    REJOINED = "rejoined"
    LEFT = "left"
    CHAT = "chat"
    ENDED = "ended"
    # documents
    DOCUMENT_SHARED = "document_shared"
    DOCUMENT_OPENED = "document_opened"
    DOCUMENT_SHOWN = "document_shown"
    # the written outcome
    SIGNED = "signed"
    REFERRED = "referred"
    ADDENDUM = "addendum"
    # recordings
    RECORDING_STARTED = "recording_started"
    RECORDING_FINISHED = "recording_finished"
    RECORDING_RECOVERED = "recording_recovered"
    RECORDING_FAILED = "recording_failed"
    # a participant of a live call stopped being recorded without anyone asking
    # (their leg's connection died, the disk filled, the server stopped)
    RECORDING_INTERRUPTED = "recording_interrupted"
    # a participant ran the pre-call check (camera, microphone, speaker, network)
    PRECALL_CHECKED = "precall_checked"
    # the consultation passed its completion deadline (accepted but no opinion
    # signed or referral made in time; ``signaling/workflow/deadlines.py``)
    COMPLETION_OVERDUE = "completion_overdue"
    # a physician confirmed their identity with the second factor to join the
    # call (real-name re-verification; signaling/workflow/second_factor.py)
    IDENTITY_VERIFIED = "identity_verified"


class Sex(StrEnum):
    """A patient's sex as registered (``patients.sex``)."""

    MALE = "male"
    FEMALE = "female"
    OTHER = "other"


class Relationship(StrEnum):
    """Who gave consent, relative to the patient (``consents.relationship``)."""

    SELF = "self"
    GUARDIAN = "guardian"
    SPOUSE = "spouse"
    CHILD = "child"
    OTHER = "other"


class OpinionKind(StrEnum):
    """A signed document of a consultation (``opinions.kind``)."""

    OPINION = "opinion"
    REFERRAL = "referral"
    ADDENDUM = "addendum"


class RecordingStatus(StrEnum):
    """Where one recorded leg is (``recordings.status``)."""

    RECORDING = "recording"
    FINISHED = "finished"
    # repaired from a ``.partial`` file left by a server stop
    RECOVERED = "recovered"
    FAILED = "failed"
    # the file was removed after its retention date; the row stays
    PURGED = "purged"


class PrecallVerdict(StrEnum):
    """What a pre-call check concluded (``precall_checks.verdict``)."""

    GOOD = "good"
    # the call can take place, with a named limitation (low bandwidth, no camera)
    LIMITED = "limited"
    UNUSABLE = "unusable"


class DocumentKind(StrEnum):
    """What an attached document is, from its content (``documents.kind``)."""

    PDF = "pdf"
    JPEG = "jpeg"
    PNG = "png"
    DICOM = "dicom"
    TEXT = "text"


class ErrorCode(StrEnum):
    """Every stable error code a client can receive (HTTP bodies, WebSocket ``error``).

    Clients branch on these, so a value never changes meaning. ``web/errors.py``
    maps each to its HTTP status and ``web/i18n.py`` gives each a label. The
    media plane (which imports nothing of ``records``) keeps its codes as
    strings; they are listed here too and a test checks they agree.
    """

    # roots of the error hierarchies
    ERROR = "error"
    RECORDS_ERROR = "records_error"
    MEDIA_ERROR = "media_error"
    INTERNAL = "internal"
    # the request itself
    BAD_REQUEST = "bad_request"
    INVALID = "invalid"
    INVALID_FIELDS = "invalid_fields"
    INVALID_JSON = "invalid_json"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    TOO_MANY_REQUESTS = "too_many_requests"
    TOO_LARGE = "too_large"
    # who is asking
    UNAUTHENTICATED = "unauthenticated"
    LOGIN_FAILED = "login_failed"
    ACCOUNT_LOCKED = "account_locked"
    # the password was right; the second factor (TOTP) is still owed
    SECOND_FACTOR_REQUIRED = "second_factor_required"
    # a physician must confirm their identity again before joining the call
    VERIFICATION_REQUIRED = "verification_required"
    # a wrong, expired or already used TOTP or recovery code
    WRONG_CODE = "wrong_code"
    BAD_ORIGIN = "bad_origin"
    CSRF_FAILED = "csrf_failed"
    FORBIDDEN = "forbidden"
    ROLE_FORBIDDEN = "role_forbidden"
    # what is asked for
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    ILLEGAL_TRANSITION = "illegal_transition"
    RULE_VIOLATION = "rule_violation"
    # the workflow
    PRACTICE_TOO_SHORT = "practice_too_short"
    CONSENT_REQUIRED = "consent_required"
    ALREADY_WITHDRAWN = "already_withdrawn"
    UNKNOWN_DEPARTMENT = "unknown_department"
    UNKNOWN_SPECIALIST = "unknown_specialist"
    UNKNOWN_ACCOUNT = "unknown_account"
    ADDRESSED_TO_OTHER = "addressed_to_other"
    NOT_PARTICIPANT = "not_participant"
    ALREADY_PARTICIPANT = "already_participant"
    NOT_JOINABLE = "not_joinable"
    CALL_FULL = "call_full"
    NOT_ASSIGNED = "not_assigned"
    NOT_SIGNED = "not_signed"
    NOT_AUTHOR = "not_author"
    # administration
    NO_AGREEMENT = "no_agreement"
    PASSWORD_CHANGE_REQUIRED = "password_change_required"  # noqa: S105 - a code, not a secret
    PASSWORD_TOO_WEAK = "password_too_weak"  # noqa: S105 - a code, not a secret
    IMPORT_INVALID = "import_invalid"
    # documents and imported records
    UNSUPPORTED_TYPE = "unsupported_type"
    TYPE_MISMATCH = "type_mismatch"
    INVALID_IMAGE = "invalid_image"
    INVALID_DICOM = "invalid_dicom"
    INVALID_PDF = "invalid_pdf"
    DECODED_TOO_LARGE = "decoded_too_large"
    MALWARE_FOUND = "malware_found"
    SCAN_UNAVAILABLE = "scan_unavailable"
    INVALID_FHIR = "invalid_fhir"
    PATIENT_MISMATCH = "patient_mismatch"
    # the regional PACS (DICOMweb): never the caller's fault
    PACS_NOT_CONFIGURED = "pacs_not_configured"
    PACS_UNREACHABLE = "pacs_unreachable"
    PACS_REFUSED = "pacs_refused"
    PACS_TIMEOUT = "pacs_timeout"
    PACS_BAD_ANSWER = "pacs_bad_answer"
    FHIR_SERVER_UNAVAILABLE = "fhir_server_unavailable"
    # the consultation report (PDF)
    REPORT_FONT_MISSING = "report_font_missing"
    # recordings
    RECORDING_UNAVAILABLE = "recording_unavailable"
    RECORDING_NOT_CONSENTED = "recording_not_consented"
    RECORDING_FAILED = "recording_failed"
    ALREADY_RECORDING = "already_recording"
    NOT_RECORDING = "not_recording"
    FILE_MISSING = "file_missing"
    RETENTION_NOT_REACHED = "retention_not_reached"
    # the call's WebSocket messages
    BAD_MESSAGE = "bad_message"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    FIELD_TOO_LONG = "field_too_long"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    ALREADY_IN_CALL = "already_in_call"
    UNKNOWN_PEER = "unknown_peer"
    CHAT_NOT_STORED = "chat_not_stored"
    END_NOT_STORED = "end_not_stored"
    # server health (never caused by the caller)
    AUDIT_CHAIN_BROKEN = "audit_chain_broken"
    AIORTC_SEAM_BROKEN = "aiortc_seam_broken"
    STORAGE_FULL = "storage_full"
