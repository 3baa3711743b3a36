"""The medical-affairs statistics (医务统计): what the department that answers
for the service reports, for a range of request dates.

**Who sees what.** The medical-affairs office (医务科) answers for its own
hospital's consultation service, so the figures are those of the consulted
side: a coordinator or reviewer (the quality office) of a hospital sees the
consultations addressed to that hospital; an administrator (the medical
community's) sees every consultation. Clinic doctors and specialists get
403 ``role_forbidden``. No figure names a patient; every look at the view and
every export is audited (``stats.view`` with the range, the filters and the
format; a refused role as ``stats.denied``).

**Which consultations.** Those *requested* from the first day of the range
(0:00 Beijing time) up to the end of its last day, that match the filters
(department, requesting institution, urgency). Every figure below is over
that set.

**Definitions.**

- *Per month, department, requesting institution, urgency*: how many were
  requested (month of the request in Beijing time; each month split by urgency).
- *Accepted*: accepted by a specialist or assigned by a coordinator at some
  point (a later cancellation still counts as accepted). *Declined*: ended
  declined. *Cancelled*: ended cancelled by the clinic (before or after
  acceptance). *Waiting*: still requested or escalated. Each rate is the count
  over all requested, rounded to 4 decimals; accepted and cancelled overlap
  by the consultations cancelled after acceptance.
- *Reasons*: the reason text given with each decline / cancellation, tallied
  by exact text (trimmed), most frequent first.
- *Time to accept / start / sign*: from the request to the first acceptance
  or assignment / the first time the call went live / the first signed
  opinion or referral, over the consultations that got there. Median and 90th
  percentile by the nearest-rank method (the smallest time that at least
  50 % / 90 % of them did not exceed), in hours rounded to 2 decimals.
- *Deadline compliance*, by ``signaling.workflow.deadlines`` (``accept_by``,
  ``complete_by``; the only place the rules live): *scheduled accepted in
  time*: routine requests accepted by their acceptance deadline (48 h);
  *completed in time*: routine requests with an opinion signed or a referral
  made by their completion deadline (3 working days); *emergencies in time*:
  emergency and urgent requests both accepted and completed by their deadline
  (12 h). A consultation counts (is *due*) once its outcome against the
  deadline is known: it met it or met it late, or the deadline passed while
  it was still open (at the moment of its decline or cancellation, or now).
  One declined or cancelled before its deadline does not count.
- *Recording coverage*: of the consultations whose call went live, the share
  with a complete recording: at least one recorded leg, every leg finished
  (or purged after its retention date), and no ``recording_interrupted`` or
  ``recording_failed`` on the timeline (a call without consent to recording
  is therefore not covered).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from records import store
from records.store import ConsultationFacts
from records.vocab import ConsultationState, ErrorCode, Role, Urgency
from records.workdays import CHINA
from signaling.errors import Forbidden, Invalid
from signaling.workflow.base import Actor, Service, Tx
from signaling.workflow.deadlines import EMERGENCIES
from signaling.workflow.lifecycle import WAITING

STATS_ROLES = frozenset({Role.COORDINATOR, Role.REVIEWER, Role.ADMIN})
# The longest range one request may ask for (ten years of requests).
MAX_DAYS = 3660
URGENCIES = (Urgency.EMERGENCY, Urgency.URGENT, Urgency.ROUTINE)
OUTCOMES = ("accepted", "declined", "cancelled", "waiting")
TIMES = ("to_accept", "to_start", "to_sign")
COMPLIANCE = ("scheduled_accept", "routine_complete", "emergency")
FORMATS = ("json", "csv", "xlsx")


@dataclass(frozen=True, kw_only=True)
class StatsQuery:
    """A range of request dates (days in Beijing time, both included) and filters."""

    first_day: date
    last_day: date
    department_id: str | None = None
    requesting_institution_id: str | None = None
    urgency: str | None = None

    def check(self) -> None:
        """Refuse an empty, reversed or too long range, or an unknown urgency."""
        if self.last_day < self.first_day:
            raise Invalid("the range ends before it starts", fields=("to",))
        if (self.last_day - self.first_day).days >= MAX_DAYS:
            raise Invalid(f"the range may cover at most {MAX_DAYS} days", fields=("from",))
        if self.urgency is not None and self.urgency not in URGENCIES:
            raise Invalid("unknown urgency", fields=("urgency",))

    @property
    def since(self) -> datetime:
        """The first instant counted (0:00 of the first day, Beijing time)."""
        return datetime.combine(self.first_day, time(0), CHINA)

    @property
    def until(self) -> datetime:
        """The first instant not counted (0:00 after the last day)."""
        return datetime.combine(self.last_day + timedelta(days=1), time(0), CHINA)

    def months(self) -> list[str]:
        """Every month the range touches, as ``YYYY-MM``."""
        months = []
        year, month = self.first_day.year, self.first_day.month
        while (year, month) <= (self.last_day.year, self.last_day.month):
            months.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return months


@dataclass(frozen=True, kw_only=True)
class Group:
    """How many consultations one department, institution or urgency had."""

    key: str
    name: str
    count: int
    # The hospital of a department (empty for the other groupings).
    institution: str = ""


@dataclass(frozen=True, kw_only=True)
class Month:
    """Requests of one month (Beijing time), by urgency."""

    month: str
    by_urgency: dict[str, int]
    total: int


@dataclass(frozen=True, kw_only=True)
class Share:
    """``count`` of ``of``, and the rate (None when ``of`` is 0)."""

    count: int
    of: int
    rate: float | None


@dataclass(frozen=True, kw_only=True)
class Duration:
    """Median and 90th percentile of a time, in hours, over ``count`` consultations."""

    count: int
    median_hours: float | None
    p90_hours: float | None


@dataclass(frozen=True, kw_only=True)
class Stats:
    """Every figure of the view for one query (see the module docstring)."""

    query: StatsQuery
    scope: str | None
    generated_at: datetime
    total: int
    by_month: list[Month]
    by_urgency: list[Group]
    by_department: list[Group]
    by_institution: list[Group]
    outcomes: dict[str, Share]
    decline_reasons: list[Group]
    cancel_reasons: list[Group]
    times: dict[str, Duration]
    compliance: dict[str, Share]
    recording: Share
    # The names of the filtered department and institution (the directory is
    # open to every logged-in user), for the exports' summary.
    filter_names: dict[str, str]


def share(count: int, of: int) -> Share:
    """``count`` of ``of`` with its rate rounded to 4 decimals."""
    return Share(count=count, of=of, rate=round(count / of, 4) if of else None)


def nearest_rank(values: list[float], percent: int) -> float:
    """The nearest-rank percentile: the smallest value with ``percent`` % of the
    values at or below it (``values`` sorted, not empty)."""
    rank = -(-percent * len(values) // 100)  # ceil without floats
    return values[max(rank, 1) - 1]


def duration(starts_ends: Iterable[tuple[datetime, datetime | None]]) -> Duration:
    """Median and p90 of ``end - start`` over the pairs that have an end."""
    seconds = sorted((end - start).total_seconds() for start, end in starts_ends if end)
    if not seconds:
        return Duration(count=0, median_hours=None, p90_hours=None)
    return Duration(
        count=len(seconds),
        median_hours=round(nearest_rank(seconds, 50) / 3600, 2),
        p90_hours=round(nearest_rank(seconds, 90) / 3600, 2),
    )


def _tally(texts: Iterable[str | None]) -> list[Group]:
    counts = Counter((t or "").strip() for t in texts)
    return [
        Group(key=text, name=text, count=n)
        for text, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def _groups(
    facts: list[ConsultationFacts], key: Callable[[ConsultationFacts], tuple[str, str, str]]
) -> list[Group]:
    counts: Counter[tuple[str, str, str]] = Counter(key(f) for f in facts)
    return [
        Group(key=k, name=name, institution=inst, count=n)
        for (k, name, inst), n in sorted(counts.items(), key=lambda item: (-item[1], item[0][1]))
    ]


def last_twelve_months(today: date) -> tuple[date, date]:
    """The default range: from the first day of the month eleven months back to
    ``today`` (twelve month bars, the last one still running)."""
    year, month = today.year, today.month - 11
    if month < 1:
        year, month = year - 1, month + 12
    return date(year, month, 1), today


class StatsService(Service):
    """The medical-affairs view and its exports."""

    def scope(self, actor: Actor) -> str | None:
        """The hospital whose consultations ``actor`` may count (None: every one).

        Raises:
            Forbidden: ``role_forbidden`` for roles without the view.
        """
        if actor.role not in STATS_ROLES or not actor.account.active:
            raise Forbidden("your role does not allow this", code=ErrorCode.ROLE_FORBIDDEN)
        # The community's administrator reports for every hospital; a hospital's
        # coordinators and quality office for the requests addressed to it.
        return None if actor.role == Role.ADMIN else actor.account.institution_id

    async def stats(self, actor: Actor, query: StatsQuery, *, fmt: str = "json") -> Stats:
        """Every figure for ``query`` as ``actor`` may see it; audited as viewed.

        Args:
            fmt: how the figures leave the server (``json``, ``csv``, ``xlsx``),
                for the audit entry.

        Raises:
            Forbidden: ``role_forbidden`` (the refusal is audited).
            Invalid: a reversed or too long range, an unknown urgency.
        """
        try:
            scope = self.scope(actor)
        except Forbidden:
            await self.write(actor, lambda tx: self._audit(tx, "stats.denied", query, fmt))
            raise
        query.check()

        def work(tx: Tx) -> tuple[list[ConsultationFacts], datetime, dict[str, str]]:
            names = {}
            if query.department_id and (d := store.get_department(tx.conn, query.department_id)):
                names["department"] = d.name
            if query.requesting_institution_id and (
                i := store.get_institution(tx.conn, query.requesting_institution_id)
            ):
                names["institution"] = i.name
            facts = store.consultation_facts(
                tx.conn,
                since=query.since,
                until=query.until,
                consulted_institution_id=scope,
                department_id=query.department_id,
                requesting_institution_id=query.requesting_institution_id,
                urgency=query.urgency,
            )
            self._audit(tx, "stats.view", query, fmt, count=len(facts))
            return facts, tx.now, names

        facts, now, names = await self.write(actor, work)
        return self.figures(query, scope, facts, now, names)

    @staticmethod
    def _audit(tx: Tx, action: str, query: StatsQuery, fmt: str, **more: Any) -> None:
        tx.audit(
            action,
            "stats",
            None,
            first_day=query.first_day.isoformat(),
            last_day=query.last_day.isoformat(),
            department_id=query.department_id,
            requesting_institution_id=query.requesting_institution_id,
            urgency=query.urgency,
            format=fmt,
            **more,
        )

    def figures(
        self,
        query: StatsQuery,
        scope: str | None,
        facts: list[ConsultationFacts],
        now: datetime,
        filter_names: dict[str, str] | None = None,
    ) -> Stats:
        """Compute every figure from the facts (see the module docstring)."""
        total = len(facts)
        months = {m: Counter[str]() for m in query.months()}
        for f in facts:
            months[f.created_at.astimezone(CHINA).strftime("%Y-%m")][f.urgency] += 1
        by_urgency = Counter(f.urgency for f in facts)
        outcomes = {
            "accepted": sum(1 for f in facts if f.accepted_at is not None),
            "declined": sum(1 for f in facts if f.state == ConsultationState.DECLINED),
            "cancelled": sum(1 for f in facts if f.state == ConsultationState.CANCELLED),
            "waiting": sum(1 for f in facts if f.state in WAITING),
        }
        deadlines = self.ctx.deadlines

        def due(deadline: datetime, met: datetime | None, f: ConsultationFacts) -> bool | None:
            """Whether ``f`` met ``deadline`` (None: not decided, so not counted)."""
            if met is not None:
                return met <= deadline
            if deadline < (f.closed_at or now):
                return False
            return None

        routine = [f for f in facts if f.urgency not in EMERGENCIES]
        emergencies = [f for f in facts if f.urgency in EMERGENCIES]
        accepted_ok = [due(deadlines.accept_by(f), f.accepted_at, f) for f in routine]
        completed_ok = [due(deadlines.complete_by(f), f.completed_at, f) for f in routine]
        emergency_ok: list[bool | None] = []
        for f in emergencies:
            completed = due(deadlines.complete_by(f), f.completed_at, f)
            if completed is None:
                emergency_ok.append(None)
            else:
                accepted = f.accepted_at is not None and f.accepted_at <= deadlines.accept_by(f)
                emergency_ok.append(completed and accepted)
        with_call = [f for f in facts if f.live_at is not None]
        covered = [
            f
            for f in with_call
            if f.recording_legs > 0 and f.complete_legs == f.recording_legs and not f.recording_gaps
        ]
        return Stats(
            query=query,
            scope=scope,
            generated_at=now,
            total=total,
            by_month=[
                Month(
                    month=m,
                    by_urgency={u.value: counts[u] for u in URGENCIES},
                    total=sum(counts.values()),
                )
                for m, counts in months.items()
            ],
            by_urgency=[Group(key=u, name=u, count=by_urgency[u]) for u in URGENCIES],
            by_department=_groups(
                facts,
                lambda f: (f.department_id, f.department_name, f.consulted_institution_name),
            ),
            by_institution=_groups(
                facts,
                lambda f: (f.requesting_institution_id, f.requesting_institution_name, ""),
            ),
            outcomes={k: share(n, total) for k, n in outcomes.items()},
            decline_reasons=_tally(
                f.decline_reason for f in facts if f.state == ConsultationState.DECLINED
            ),
            cancel_reasons=_tally(
                f.cancel_reason for f in facts if f.state == ConsultationState.CANCELLED
            ),
            times={
                "to_accept": duration((f.created_at, f.accepted_at) for f in facts),
                "to_start": duration((f.created_at, f.live_at) for f in facts),
                "to_sign": duration((f.created_at, f.completed_at) for f in facts),
            },
            compliance={
                key: share(sum(1 for ok in oks if ok), sum(1 for ok in oks if ok is not None))
                for key, oks in (
                    ("scheduled_accept", accepted_ok),
                    ("routine_complete", completed_ok),
                    ("emergency", emergency_ok),
                )
            },
            recording=share(len(covered), len(with_call)),
            filter_names=filter_names or {},
        )
