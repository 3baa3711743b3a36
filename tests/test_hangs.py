"""A hung test fails with what its event loop was waiting on (tests/hangs.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import hangs

REPO = Path(__file__).resolve().parent.parent


def test_a_hung_test_fails_naming_the_task_and_the_line_it_waits_on(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from tests.hangs import pytest_timeout_set_timer  # noqa: F401\n"
    )
    # One test hangs in its body, one in a fixture's teardown (where the
    # cluster test once hung in CI).
    (tmp_path / "test_hang.py").write_text(
        "import asyncio\n"
        "\n"
        "import pytest\n"
        "\n"
        "async def wait_for_goodbye(event):\n"
        "    await event.wait()\n"
        "\n"
        "async def test_hangs_waiting_for_a_task():\n"
        "    event = asyncio.Event()\n"
        "    await asyncio.create_task(wait_for_goodbye(event), name='goodbye')\n"
        "\n"
        "@pytest.fixture\n"
        "async def server():\n"
        "    yield\n"
        "    await asyncio.create_task(wait_for_goodbye(asyncio.Event()), name='closing')\n"
        "\n"
        "async def test_hangs_in_teardown(server):\n"
        "    pass\n"
    )
    # Only the two plugins it needs (the others' imports took seconds).
    plugins = ["-p", "pytest_timeout", "-p", "pytest_asyncio.plugin", "-p", "no:cacheprovider"]
    args = ["-q", *plugins, "--timeout", "2", "-o", "asyncio_mode=auto"]
    # Under CI pytest repeats each failure's whole message in its short summary;
    # the inner run's report is read the same wherever the suite runs.
    quiet = {k: v for k, v in os.environ.items() if k not in ("CI", "BUILD_NUMBER")}
    run = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "pytest", *args, "--rootdir", str(tmp_path), "test_hang.py"],
        cwd=tmp_path,
        env={**quiet, "PYTHONPATH": str(REPO), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "FAILED test_hang.py::test_hangs_waiting_for_a_task - Failed: Timeout >2.0s" in out
    assert "ERROR test_hang.py::test_hangs_in_teardown - Failed: Timeout >2.0s" in out
    assert out.count("2 asyncio task(s) pending:") == 2
    # Each task's name, and the line of our code it was stuck on.
    assert "name='goodbye'" in out and "name='closing'" in out
    assert 'test_hang.py", line 6, in wait_for_goodbye' in out
    assert "await event.wait()" in out


def test_the_suite_reports_its_own_hangs_so(request: pytest.FixtureRequest) -> None:
    hook = request.config.pluginmanager.hook.pytest_timeout_set_timer
    assert hangs.pytest_timeout_set_timer in [impl.function for impl in hook.get_hookimpls()]
