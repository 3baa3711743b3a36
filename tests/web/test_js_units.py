"""The browser JavaScript's unit tests (tests/js, run by Node's own test runner).

They test the call page's pure state module without a DOM. Outside CI a machine
without Node skips them; in CI (``CI=true``) a missing Node is a failure, so that
the tests cannot silently stop running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS_TESTS = Path(__file__).resolve().parent.parent / "js"
TIMEOUT_SECONDS = 120


def test_js_units() -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node is not installed, and CI=true: the tests in tests/js must run")
        pytest.skip("node is not installed")
    assert any(JS_TESTS.glob("*.test.mjs")), f"no tests in {JS_TESTS}"
    result = subprocess.run(  # noqa: S603 - our node, fixed arguments
        [node, "--test", f"{JS_TESTS}/"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
