"""The browser JavaScript's unit tests (tests/js, run by Node's own test runner).

They test the call page's pure state module without a DOM. Outside CI a machine
without Node skips them; in CI (``CI=true``) a missing Node is a failure, so that
the tests cannot silently stop running.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..requirements import require

JS_TESTS = Path(__file__).resolve().parent.parent / "js"
TIMEOUT_SECONDS = 120


def test_js_units() -> None:
    node = shutil.which("node")
    require(node is not None, "node is not installed (the tests in tests/js need it)")
    assert any(JS_TESTS.glob("*.test.mjs")), f"no tests in {JS_TESTS}"
    result = subprocess.run(  # noqa: S603 - our node, fixed arguments
        [node, "--test", f"{JS_TESTS}/"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
