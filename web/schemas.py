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
    """A pre-call network probe's offer: one data channel, all candidates gathered."""

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
    FhirFetchIn,
)
