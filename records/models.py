"""Typed views of stored rows, handed to the layers above."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Self

from sqlalchemy import RowMapping


class Row:
    """Base of the typed row views (each a frozen dataclass)."""

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Self:
        """Build from a row whose columns include every field, by name."""
        fields: dict[str, Any] = getattr(cls, "__dataclass_fields__")  # noqa: B009 - on subclasses
        return cls(**{name: row[name] for name in fields if name in row})


@dataclass(frozen=True, kw_only=True)
class Institution(Row):
    """A clinic or hospital."""

    id: str
    name: str
    kind: str
    region: str


@dataclass(frozen=True, kw_only=True)
class Agreement(Row):
    """An institution may ask another for consultations (a 医联体 or 对口支援)."""

    id: str
    requesting_institution_id: str
    consulting_institution_id: str
    kind: str
    since: date
    ended_at: datetime | None
    created_at: datetime

    @property
    def active(self) -> bool:
        """Not ended."""
        return self.ended_at is None


@dataclass(frozen=True, kw_only=True)
class Department(Row):
    """A department of an institution."""

    id: str
    institution_id: str
    code: str
    name: str


@dataclass(frozen=True, kw_only=True)
class Account(Row):
    """A user account; ``department_ids`` are the departments a specialist serves."""

    id: str
    username: str
    display_name: str
    role: str
    institution_id: str
    licence_no: str | None
    title: str | None
    practice_start: date | None
    active: bool
    failed_logins: int
    locked_until: datetime | None
    department_ids: frozenset[str] = frozenset()
    phone: str | None = None
    must_change_password: bool = False
    deactivated_at: datetime | None = None
    deactivated_by: str | None = None

    @classmethod
    def of(cls, row: RowMapping, department_ids: frozenset[str] = frozenset()) -> Self:
        """Build from a row of ``accounts`` and the departments the account serves."""
        return cls.from_row({**row, "department_ids": department_ids})

    def years_of_practice(self, today: date) -> float:
        """Whole years of independent practice up to ``today`` (0 if unknown)."""
        if self.practice_start is None:
            return 0.0
        start = self.practice_start
        years = today.year - start.year
        if (today.month, today.day) < (start.month, start.day):
            years -= 1
        return float(max(years, 0))


@dataclass(frozen=True, kw_only=True)
class Patient(Row):
    """A patient of a clinic."""

    id: str
    institution_id: str
    name: str
    sex: str
    birth_date: date
    national_id: str
    phone: str | None
    created_at: datetime

    @property
    def national_id_masked(self) -> str:
        """The ID number as shown on screens: first 4 and last 2 characters."""
        nid = self.national_id
        return nid[:4] + "*" * max(len(nid) - 6, 0) + nid[-2:] if len(nid) > 6 else "*" * len(nid)


@dataclass(frozen=True, kw_only=True)
class Consent(Row):
    """A patient's informed consent."""

    id: str
    patient_id: str
    scope_consultation: bool
    scope_recording: bool
    given_by: str
    relationship: str
    taken_by: str
    given_at: datetime
    withdrawn_at: datetime | None
    withdrawn_by: str | None


@dataclass(frozen=True, kw_only=True)
class Consultation(Row):
    """A consultation request and its current state."""

    id: str
    patient_id: str
    requesting_institution_id: str
    requested_by: str
    department_id: str
    consulted_institution_id: str
    target_specialist_id: str | None
    assigned_specialist_id: str | None
    urgency: str
    reason: str
    question: str
    state: str
    escalated: bool
    decline_reason: str | None
    created_at: datetime
    updated_at: datetime
    invitee_ids: frozenset[str] = frozenset()

    @classmethod
    def of(cls, row: RowMapping, invitee_ids: frozenset[str] = frozenset()) -> Self:
        """Build from a row of ``consultations`` and its invitees."""
        return cls.from_row({**row, "invitee_ids": invitee_ids})


@dataclass(frozen=True, kw_only=True)
class Event(Row):
    """One entry of a consultation's timeline."""

    id: int
    consultation_id: str
    at: datetime
    kind: str
    actor_id: str | None
    data: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Opinion(Row):
    """A signed opinion, referral or addendum."""

    id: str
    consultation_id: str
    author_id: str
    kind: str
    parent_id: str | None
    body: dict[str, Any]
    signed_at: datetime
    sha256: str


@dataclass(frozen=True, kw_only=True)
class RosterEntry(Row):
    """A specialist on duty for a department between two times."""

    id: str
    department_id: str
    account_id: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True, kw_only=True)
class PrecallCheck(Row):
    """A participant's pre-call check: when, the verdict, and the figures behind it."""

    id: str
    consultation_id: str
    participant_id: str
    checked_at: datetime
    verdict: str
    report: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Recording(Row):
    """A recorded participant leg and its file."""

    id: str
    consultation_id: str
    participant_id: str
    part: int
    path: str
    container: str
    video_codec: str | None
    audio_codec: str | None
    started_at: datetime
    offset_ms: int | None
    duration_ms: int | None
    size: int | None
    sha256: str | None
    status: str
    error: str | None
    finished_at: datetime | None
    retain_until: datetime | None
