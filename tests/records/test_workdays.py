"""Working days of mainland China (``records/workdays.py``, on ``chinesecalendar``).

Each case is a request at 10:00 Beijing time and the moment 3 working days
later: across a plain weekend, across the National Day holiday 2025 and the
Spring Festival 2026, with their adjusted working weekend days (调休), and
outside the years the package knows (Monday to Friday, logged).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import pytest

from records.workdays import CHINA, WorkingCalendar, known_years


def cst(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHINA)  # type: ignore[misc]


@pytest.fixture
def calendar() -> WorkingCalendar:
    return WorkingCalendar()


def test_the_package_knows_2024_to_2026() -> None:
    assert {2024, 2025, 2026} <= set(known_years())


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2025, 10, 1), False),  # National Day
        (date(2025, 10, 8), False),  # the holiday's last day (a Wednesday)
        (date(2025, 9, 28), True),  # Sunday, worked in exchange
        (date(2025, 10, 11), True),  # Saturday, worked in exchange
        (date(2025, 10, 12), False),  # an ordinary Sunday
        (date(2026, 2, 16), False),  # Spring Festival (a Monday)
        (date(2026, 2, 14), True),  # Saturday before it, worked
        (date(2026, 2, 28), True),  # Saturday after it, worked
        (date(2024, 2, 4), True),  # Spring Festival 2024: a worked Sunday
        (date(2026, 11, 23), True),  # an ordinary Monday
    ],
)
def test_holidays_and_adjusted_working_days(
    calendar: WorkingCalendar, day: date, working: bool
) -> None:
    assert calendar.is_working_day(day) is working


@pytest.mark.parametrize(
    ("start", "due"),
    [
        # Thursday before an ordinary weekend: Friday, Monday, Tuesday.
        (cst(2026, 11, 19, 10), cst(2026, 11, 24, 10)),
        # Thursday before the National Day week 2025: Friday, the worked Sunday
        # 28 September, Monday.
        (cst(2025, 9, 25, 10), cst(2025, 9, 29, 10)),
        # Its last working day (Tuesday 30 September): 9 and 10 October, then the
        # worked Saturday 11 October.
        (cst(2025, 9, 30, 10), cst(2025, 10, 11, 10)),
        # Thursday before the Spring Festival 2026: Friday, the worked Saturday 14
        # February, then nine days off, Tuesday 24 February.
        (cst(2026, 2, 12, 10), cst(2026, 2, 24, 10)),
        # From a day off the count starts at the next working day's 0:00 and ends
        # as the third working day ends (Saturday -> end of Wednesday).
        (cst(2026, 11, 21, 15), cst(2026, 11, 26, 0)),
        # From inside the National Day holiday: 9, 10 and the worked 11 October.
        (cst(2025, 10, 3, 9), cst(2025, 10, 12, 0)),
    ],
)
def test_three_working_days(calendar: WorkingCalendar, start: datetime, due: datetime) -> None:
    assert calendar.add_working_days(start, 3) == due
    # The same moment whatever zone the request is given in.
    assert calendar.add_working_days(start.astimezone(UTC), 3) == due


def test_zero_working_days_is_the_start_on_a_working_day(calendar: WorkingCalendar) -> None:
    assert calendar.add_working_days(cst(2026, 11, 23, 9), 0) == cst(2026, 11, 23, 9)


def test_outside_the_known_years_monday_to_friday_counts_and_is_logged(
    calendar: WorkingCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    year = known_years().stop  # the first year without an arrangement
    first = date(year, 1, 1)
    with caplog.at_level(logging.WARNING, logger="records.workdays"):
        assert calendar.is_working_day(first) is (first.weekday() < 5)
        saturday = next(date(year, 1, d) for d in range(1, 8) if date(year, 1, d).weekday() == 5)
        assert calendar.is_working_day(saturday) is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per year
    assert str(year) in warnings[0].getMessage()
    assert "update chinesecalendar" in warnings[0].getMessage()
    # A count that runs into that year still gives an answer.
    assert calendar.add_working_days(cst(year - 1, 12, 30, 10), 3) > cst(year - 1, 12, 30, 10)
