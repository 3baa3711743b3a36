"""The signaling benchmark still runs: tiny parameters, every message delivered.

Not a performance test (the machine is shared); it keeps ``signaling.py`` working.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..redisserver import redis_or_skip

SCRIPT = Path(__file__).with_name("signaling.py")
LAST_LINE = re.compile(
    r"signaling: (\d+) sockets, p99 \d+\.\d\d ms at (\d+) msg/s \(bare relay p99 \d+\.\d\d ms\)"
)


@pytest.mark.slow
def test_benchmark_runs_and_loses_nothing() -> None:
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [sys.executable, str(SCRIPT), "--consultations", "10", "--rate", "100", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    match = LAST_LINE.fullmatch(lines[-1])
    assert match, lines[-1]
    assert int(match.group(1)) == 20  # two joined sockets per consultation
    assert 80 <= int(match.group(2)) <= 120
    for name in ("teleconsult", "bare relay"):
        [summary] = [line for line in lines if line.startswith(f"{name}: sent")]
        sent = int(re.search(r"sent (\d+)", summary).group(1))  # type: ignore[union-attr]
        assert sent >= 150, summary
        assert f"delivered {sent}, lost 0, held at end 20, errors none" in summary, summary
    # Chat is relayed first, then stored: every line also reached the timeline.
    [stored] = [line for line in lines if line.startswith("teleconsult chat on the timeline")]
    assert stored.endswith("not stored 0"), stored
    assert int(re.search(r"n (\d+),", stored).group(1)) > 0, stored  # type: ignore[union-attr]


LAST_LINE_CLUSTER = re.compile(
    r"signaling: (\d+) sockets over 2 processes, p99 \d+\.\d\d ms at (\d+) msg/s "
    r"\(bare relay p99 \d+\.\d\d ms\)"
)


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_benchmark_over_two_processes_on_redis_loses_nothing(database: str) -> None:
    redis_or_skip()
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [
            sys.executable,
            str(SCRIPT),
            "--consultations",
            "10",
            "--rate",
            "100",
            "--seconds",
            "2",
            "--processes",
            "2",
            "--database",
            database,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    match = LAST_LINE_CLUSTER.fullmatch(lines[-1])
    assert match, lines[-1]
    assert int(match.group(1)) == 20
    [summary] = [line for line in lines if line.startswith("teleconsult: sent")]
    sent = int(re.search(r"sent (\d+)", summary).group(1))  # type: ignore[union-attr]
    assert f"delivered {sent}, lost 0, held at end 20, errors none" in summary, summary
    assert lines[0].endswith(f", {database}"), lines[0]  # the load line names the database
