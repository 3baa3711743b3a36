"""Deadlines from practice: by when a consultation must be accepted and completed.

- **Accept** (scheduled): within ``accept_hours`` (48) of the request.
- **Complete** (an opinion signed or the patient referred): within
  ``complete_working_days`` (3) working days of the request, counted on
  mainland China's working days (``records.workdays``: weekends and public
  holidays do not count, adjusted working weekend days do).
- **Emergencies** (urgency ``emergency`` or ``urgent``): accepted and completed
  within ``emergency_hours`` (12) of the request, on any day.

Both clocks run from the request, so a late acceptance does not buy more time
for the opinion. A consultation's *current* deadline is the acceptance one
while it waits (requested or escalated), the completion one once accepted,
live or ended, and none when it is closed (signed, referred, cancelled,
declined). This is the only module that knows these rules; the rest of the
code asks for "the deadline of this consultation".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from records.models import Consultation
from records.vocab import Urgency
from records.workdays import WorkingCalendar
from signaling.workflow.lifecycle import WAITING, State

# Urgencies held to the emergency deadline.
EMERGENCIES = frozenset({Urgency.EMERGENCY, Urgency.URGENT})
# States whose current deadline is completion.
IN_HAND = frozenset({State.ACCEPTED, State.LIVE, State.ENDED})


class Requested(Protocol):
    """What the deadlines of a request depend on (a ``Consultation``, or the
    statistics' facts about one)."""

    @property
    def urgency(self) -> str:
        """The request's urgency."""
        ...

    @property
    def created_at(self) -> datetime:
        """When it was requested."""
        ...


class DeadlineKind(StrEnum):
    """Which deadline a consultation is running against."""

    ACCEPT = "accept"
    COMPLETE = "complete"


@dataclass(frozen=True, kw_only=True)
class DeadlineRules:
    """The configured limits (``web.settings``: ``deadline_*``)."""

    accept_hours: float = 48.0
    complete_working_days: int = 3
    emergency_hours: float = 12.0


@dataclass(frozen=True, kw_only=True)
class Deadline:
    """One deadline of a consultation, seen at a moment."""

    kind: DeadlineKind
    due_at: datetime
    now: datetime

    @property
    def seconds_left(self) -> int:
        """Whole seconds until the deadline (negative: overdue by that much)."""
        return int((self.due_at - self.now).total_seconds() // 1)

    @property
    def overdue(self) -> bool:
        """Whether the deadline has passed."""
        return self.now > self.due_at


class Deadlines:
    """The deadline rules applied to consultations."""

    def __init__(
        self, rules: DeadlineRules | None = None, calendar: WorkingCalendar | None = None
    ) -> None:
        """Apply ``rules`` (the defaults of practice unless given) on ``calendar``."""
        self.rules = rules or DeadlineRules()
        self.calendar = calendar or WorkingCalendar()

    def accept_by(self, c: Requested) -> datetime:
        """When ``c`` must be accepted at the latest."""
        hours = self.rules.accept_hours
        if c.urgency in EMERGENCIES:
            hours = min(hours, self.rules.emergency_hours)
        return c.created_at + timedelta(hours=hours)

    def complete_by(self, c: Requested) -> datetime:
        """When ``c`` must be completed (signed or referred) at the latest."""
        if c.urgency in EMERGENCIES:
            return c.created_at + timedelta(hours=self.rules.emergency_hours)
        due = self.calendar.add_working_days(c.created_at, self.rules.complete_working_days)
        return due.astimezone(UTC)

    def current(self, c: Consultation, now: datetime) -> Deadline | None:
        """The deadline ``c`` runs against at ``now`` (None when it is closed)."""
        if c.state in WAITING:
            return Deadline(kind=DeadlineKind.ACCEPT, due_at=self.accept_by(c), now=now)
        if c.state in IN_HAND:
            return Deadline(kind=DeadlineKind.COMPLETE, due_at=self.complete_by(c), now=now)
        return None

    def earliest_complete_by(self, urgency: str, now: datetime) -> datetime:
        """A request made before the returned moment may be overdue for completion at
        ``now``; one made after it cannot (working days are never shorter than days)."""
        if urgency in EMERGENCIES:
            return now - timedelta(hours=self.rules.emergency_hours)
        return now - timedelta(days=self.rules.complete_working_days)

    def accept_after_seconds(self, urgency: str) -> int:
        """Seconds a request of ``urgency`` may wait for acceptance."""
        hours = self.rules.accept_hours
        if urgency in EMERGENCIES:
            hours = min(hours, self.rules.emergency_hours)
        return int(hours * 3600)
