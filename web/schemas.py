"""Request bodies of the JSON API, validated with pydantic (and described in OpenAPI).

Bodies are parsed strictly from JSON: unknown fields, wrong types and over-long
text are refused with 400 naming the fields, before anything is stored.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from records.identity import normalize_resident_id

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Long = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
Id = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]

ResidentId = Annotated[str, AfterValidator(normalize_resident_id)]


class Body(BaseModel):
    """Base of every request body: strict, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LoginIn(Body):
    """Log in."""

    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class PatientIn(Body):
    """Register a patient."""

    name: Name
    sex: Literal["male", "female", "other"]
    birth_date: date
    national_id: ResidentId
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 -]{5,20}$")] | None = None


class ConsentIn(Body):
    """Record a patient's informed consent."""

    scope_consultation: bool
    scope_recording: bool
    given_by: Name
    relationship: Literal["self", "guardian", "spouse", "child", "other"]


class ConsultationIn(Body):
    """Request a consultation."""

    patient_id: Id
    department_id: Id
    urgency: Literal["emergency", "urgent", "routine"]
    reason: Short
    question: Long
    target_specialist_id: Id | None = None


class ReasonIn(Body):
    """A reason (declining, cancelling)."""

    reason: Short


class AssignIn(Body):
    """Assign a consultation to a specialist."""

    specialist_id: Id


class OpinionIn(Body):
    """A consultation opinion, signed on submission."""

    findings: Long
    impression: Long
    recommendations: Long
    notes: Long | None = None


class ReferralIn(Body):
    """End with a referral to an in-person visit."""

    reason: Long
    department: Short | None = None


class RosterIn(Body):
    """Put a specialist on duty."""

    department_id: Id
    specialist_id: Id
    starts_at: AwareDatetime
    ends_at: AwareDatetime = Field(description="must be after starts_at")


class InviteIn(Body):
    """Invite another doctor into the call."""

    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AddendumIn(Body):
    """An addendum to a signed opinion or referral, signed on submission."""

    text: Long


class FhirFetchIn(Body):
    """Which patient to fetch from the hospital's FHIR server: a FHIR search token
    (``system|value``); none for the patient's resident ID number."""

    identifier: Annotated[str, StringConstraints(min_length=3, max_length=300)] | None = None


class ProbeIn(Body):
    """A pre-call network probe's offer: one data channel and a video sender, all
    candidates gathered."""

    sdp: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]


DeviceStatus = Literal["ok", "denied", "missing", "busy", "failed"]
Kbps = Annotated[float, Field(ge=0, le=10_000_000)]


class CameraIn(Body):
    """The camera as the pre-call check found it (the size and rate it delivered)."""

    status: DeviceStatus
    width: Annotated[int, Field(ge=0, le=16384)] | None = None
    height: Annotated[int, Field(ge=0, le=16384)] | None = None
    frame_rate: Annotated[float, Field(ge=0, le=1000)] | None = None


class MicrophoneIn(Body):
    """The microphone as the pre-call check found it (peak level, 0 to 1)."""

    status: DeviceStatus
    level: Annotated[float, Field(ge=0, le=1)] | None = None


class PathIn(Body):
    """One network path the pre-call check probed."""

    name: Literal["direct", "turn_udp", "turn_tcp", "turn_tls"]
    status: Literal["ok", "failed", "not_configured"]
    uplink_kbps: Kbps | None = None
    loss_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    rtt_ms: Annotated[float, Field(ge=0, le=600_000)] | None = None


class PrecallIn(Body):
    """A finished pre-call check, as measured by the page."""

    camera: CameraIn
    microphone: MicrophoneIn
    speaker: Literal["heard", "not_heard", "skipped"]
    paths: Annotated[list[PathIn], Field(min_length=1, max_length=4)]


# A TOTP code (6 digits) or a recovery code (``ABCDE-FGHJK``); spaces are allowed
# the way people copy them.
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=6, max_length=16)]


class CodeIn(Body):
    """A second-factor code: from the authenticator app, or a recovery code."""

    code: Code


class VerifyIn(Body):
    """Confirm one's identity to join a consultation's call."""

    consultation_id: Id
    code: Code


class PacsAttachIn(Body):
    """Attach a study of the regional PACS to the consultation."""

    study_uid: Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]


BODIES: tuple[type[Body], ...] = (
    LoginIn,
    PatientIn,
    ConsentIn,
    ConsultationIn,
    ReasonIn,
    AssignIn,
    OpinionIn,
    ReferralIn,
    RosterIn,
    InviteIn,
    AddendumIn,
    ProbeIn,
    PrecallIn,
    CodeIn,
    VerifyIn,
    PacsAttachIn,
)


# -- administration -------------------------------------------------------------------

Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9._-]{3,64}$")]
DepartmentCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Licence = Annotated[str, StringConstraints(pattern=r"^[0-9]{15}$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9 -]{5,20}$")]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
InstitutionName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]


class InstitutionIn(Body):
    """Add or change an institution."""

    name: InstitutionName
    kind: Literal["township_clinic", "county_hospital", "specialist_hospital"]
    region: InstitutionName


class AgreementIn(Body):
    """Let an institution ask another for consultations."""

    requesting_institution_id: Id
    consulting_institution_id: Id
    kind: Literal["medical_alliance", "paired_support"]
    since: date | None = None


class DepartmentIn(Body):
    """Add a department."""

    institution_id: Id
    code: DepartmentCode
    name: InstitutionName


class DepartmentEditIn(Body):
    """Rename a department."""

    name: InstitutionName


class AccountEditIn(Body):
    """What an administrator says about a person."""

    display_name: Name
    role: Literal["clinic_doctor", "specialist", "coordinator", "reviewer", "admin"]
    title: Title | None = None
    licence_no: Licence | None = None
    practice_start: date | None = None
    phone: Phone | None = None
    department_ids: list[Id] = Field(default_factory=list, max_length=50)


class AccountIn(AccountEditIn):
    """Create an account (it gets a temporary password)."""

    username: Username
    institution_id: Id


class PasswordChangeIn(Body):
    """Choose a new password."""

    current_password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    new_password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


ADMIN_BODIES: tuple[type[Body], ...] = (
    InstitutionIn,
    AgreementIn,
    DepartmentIn,
    DepartmentEditIn,
    AccountIn,
    AccountEditIn,
    PasswordChangeIn,
    FhirFetchIn,
)
