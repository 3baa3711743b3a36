"""Working days of mainland China: public holidays and the adjusted working weekend days (调休).

The calendar is the State Council's yearly arrangement as kept by the
``chinesecalendar`` package (``chinese_calendar``); this module is its only
user. Days are dates in China Standard Time (UTC+8, no daylight saving since
1991, so a fixed offset needs no time-zone database).

Outside the years the package knows (2004-2026 in 1.11.0) there is no official
arrangement to follow: such a day counts as a working day when it is Monday to
Friday, and the first such look-up of each year is logged as a warning, so the
operator knows to update the package once the State Council publishes the next
year (usually in November). Refusing to compute a deadline instead would leave
the queue without clocks over New Year.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone

import chinese_calendar

log = logging.getLogger(__name__)

# China Standard Time.
CHINA = timezone(timedelta(hours=8), "CST")


def known_years() -> range:
    """The years whose holiday arrangement the package holds."""
    years = [d.year for d in chinese_calendar.holidays]
    return range(min(years), max(years) + 1)


class WorkingCalendar:
    """Which days are working days, and working time added to a moment."""

    def __init__(self) -> None:
        """Load the package's years (a warning per unknown year, once)."""
        self.years = known_years()
        self._warned: set[int] = set()

    def knows(self, day: date) -> bool:
        """Whether ``day`` is in a year of the official arrangement."""
        return day.year in self.years

    def is_working_day(self, day: date) -> bool:
        """Whether people work on ``day`` (a date in China): weekdays that are not
        public holidays, and the weekend days worked in exchange for a holiday.

        Outside the known years: Monday to Friday (see the module docstring).
        """
        if not self.knows(day):
            if day.year not in self._warned:
                self._warned.add(day.year)
                log.warning(
                    "no holiday arrangement for %d (chinesecalendar knows %d-%d): "
                    "counting Monday to Friday as working days; update chinesecalendar",
                    day.year,
                    self.years.start,
                    self.years.stop - 1,
                )
            return day.weekday() < 5
        return bool(chinese_calendar.is_workday(day))

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The first moment at which ``days`` whole working days (24 h each) of
        working time have passed since ``start``.

        Time counts only on working days (in China's time): from a Thursday
        10:00 before a weekend, 3 working days end on Tuesday 10:00; from a
        moment on a day off, counting starts at 0:00 of the next working day
        (from a Saturday, 3 working days end as Wednesday ends).

        Args:
            start: a timezone-aware moment.
            days: how many working days (0 or more).

        Returns:
            A timezone-aware moment in China's time.
        """
        cursor = start.astimezone(CHINA)
        left = timedelta(days=days)
        while left > timedelta(0):
            midnight = datetime.combine(cursor.date() + timedelta(days=1), time(), CHINA)
            if self.is_working_day(cursor.date()):
                step = min(left, midnight - cursor)
                cursor += step
                left -= step
            else:
                cursor = midnight
        return cursor
