"""The statistics' own arithmetic (``signaling/workflow/stats.py``): the
nearest-rank percentile, the default range and the months of a range."""

from __future__ import annotations

from datetime import date

import pytest

from signaling.errors import Invalid
from signaling.workflow.stats import StatsQuery, last_twelve_months, nearest_rank, share


def test_nearest_rank_is_a_value_of_the_list() -> None:
    ten = [float(v) for v in range(1, 11)]
    assert nearest_rank(ten, 50) == 5.0  # 5 of 10 are at or below it
    assert nearest_rank(ten, 90) == 9.0
    assert nearest_rank([7.0], 50) == nearest_rank([7.0], 90) == 7.0
    assert nearest_rank([1.0, 2.0], 50) == 1.0
    assert nearest_rank([1.0, 2.0], 90) == 2.0


def test_rates_are_rounded_and_absent_without_a_denominator() -> None:
    assert share(1, 3).rate == 0.3333
    assert share(0, 0).rate is None


def test_the_default_range_is_twelve_months_across_new_year() -> None:
    assert last_twelve_months(date(2026, 1, 15)) == (date(2025, 2, 1), date(2026, 1, 15))
    assert last_twelve_months(date(2026, 12, 31)) == (date(2026, 1, 1), date(2026, 12, 31))
    first, last = last_twelve_months(date(2026, 3, 1))
    assert len(StatsQuery(first_day=first, last_day=last).months()) == 12


def test_a_query_checks_its_range() -> None:
    q = StatsQuery(first_day=date(2025, 12, 20), last_day=date(2026, 1, 3))
    assert q.months() == ["2025-12", "2026-01"]
    # Days in Beijing time: 0:00 CST is 16:00 UTC the day before.
    assert q.since.isoformat() == "2025-12-20T00:00:00+08:00"
    assert q.until.isoformat() == "2026-01-04T00:00:00+08:00"
    with pytest.raises(Invalid) as reversed_range:
        StatsQuery(first_day=date(2026, 1, 2), last_day=date(2026, 1, 1)).check()
    assert reversed_range.value.fields == ("to",)
    with pytest.raises(Invalid) as bad_urgency:
        StatsQuery(first_day=q.first_day, last_day=q.last_day, urgency="soon").check()
    assert bad_urgency.value.fields == ("urgency",)
