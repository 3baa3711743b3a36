"""The township benchmark's summary (tests/bench/township.py), on rows made here.

A cell whose calls did not all come up is summed up, not a crash: sorting the
call-ups of a cell with a failed call compared None with a number and the
whole run's summary was lost (found in review).
"""

from __future__ import annotations

from typing import Any

from .township import Row, summary


def test_a_cell_with_a_call_that_did_not_come_up_is_counted(capsys: Any) -> None:
    rows = [
        Row("1m-10loss-300ms", "relay", 2, up_s=2.5),
        Row("1m-10loss-300ms", "relay", 2, up_s=0.0, error="no video: TimeoutError"),
        Row("1m-10loss-300ms", "relay", 2, up_s=1.1),
        Row("clean", "relay", 2, up_s=0.0, error="no video: TimeoutError"),
    ]
    summary(rows)
    lines = capsys.readouterr().out.splitlines()
    lossy = "call up 1m-10loss-300ms relay: 3 call(s), median 1.8 s, slowest 2.5 s, 1 with no video"
    assert lossy in lines, lines
    assert "call up clean relay: 1 call(s), 1 with no video" in lines, lines
