"""Typed views of stored rows, handed to the layers above."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Self

from sqlalchemy import RowMapping


def _pick(cls: type[Any], row: Mapping[Any, Any]) -> dict[str, Any]:
    return {name: row[name] for name in cls.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True)
class Institution:
    """A clinic or hospital."""

    id: str
    name: str
    kind: str
    region: str

    @classmethod
    def from_row(cls, row: RowMapping) -> Self:
        """Build from a row of ``institutions``."""
        return cls(**_pick(cls, row))


@dataclass(frozen=True, kw_only=True)
class Department:
    """A department of an institution."""

    id: str
    institution_id: str
    code: str
    name: str

    @classmethod
    def from_row(cls, row: RowMapping) -> Self:
        """Build from a row of ``departments``."""
        return cls(**_pick(cls, row))


@dataclass(frozen=True, kw_only=True)
class Account:
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

    @classmethod
    def from_row(cls, row: RowMapping, department_ids: frozenset[str] = frozenset()) -> Self:
        """Build from a row of ``accounts``."""
        fields = _pick(cls, {**row, "department_ids": department_ids})
        return cls(**fields)

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
class Patient:
    """A patient of a clinic."""

    id: str
    institution_id: str
    name: str
    sex: str
    birth_date: date
    national_id: str
    phone: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: RowMapping) -> Self:
        """Build from a row of ``patients``."""
        return cls(**_pick(cls, row))

    @property
    def national_id_masked(self) -> str:
        """The ID number as shown on screens: first 4 and last 2 characters."""
        nid = self.national_id
        return nid[:4] + "*" * max(len(nid) - 6, 0) + nid[-2:] if len(nid) > 6 else "*" * len(nid)


@dataclass(frozen=True, kw_only=True)
class Consent:
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

    @classmethod
    def from_row(cls, row: RowMapping) -> Self:
        """Build from a row of ``consents``."""
        return cls(**_pick(cls, row))


@dataclass(frozen=True, kw_only=True)
class Consultation:
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
    def from_row(cls, row: RowMapping, invitee_ids: frozenset[str] = frozenset()) -> Self:
        """Build from a row of ``consultations`` and its invitees."""
        return cls(**_pick(cls, {**row, "invitee_ids": invitee_ids}))


@dataclass(frozen=True, kw_only=True)
class Event:
    """One entry of a consultation's timeline."""

    id: int
    consultation_id: str
    at: datetime
    kind: str
    actor_id: str | None
    data: dict[str, Any]

    @classmethod
    def from_row(cls, row: RowMapping) -> Self:
        """Build from a row of ``consultation_events``."""
        return cls(**_pick(cls, row))


@dataclass(frozen=True, kw_only=True)
class Opinion:
    """A signed opinion, referral or addendum."""

    id: str
    consultation_id: str
    author_id: str
    kind: str
    parent_id: str | None
    body: dict[str, Any]
    signed_at: datetime
    sha256: str

    @classmethod
    def from_row(cls, row: RowMapping) -> Self:
        """Build from a row of ``opinions``."""
        return cls(**_pick(cls, row))


@dataclass(frozen=True, kw_only=True)
class RosterEntry:
    """A specialist on duty for a department between two times."""

    id: str
    department_id: str
    account_id: str
    starts_at: datetime
    ends_at: datetime

    @classmethod
    def from_row(cls, row: RowMapping) -> Self:
        """Build from a row of ``roster``."""
        return cls(**_pick(cls, row))


@dataclass(frozen=True, kw_only=True)
class Recording:
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

    @classmethod
    def from_row(cls, row: RowMapping) -> Self:
        """Build from a row of ``recordings``."""
        return cls(**_pick(cls, row))
