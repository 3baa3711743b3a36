"""What a test needs from the machine: one rule for a missing component.

Under CI (``CI=true``: ``.ci/run`` installs Chromium, coturn, Redis, Orthanc,
node, ...) a missing component fails the test, because a test that skipped
there would pass without having run. Elsewhere the test is skipped and the
message says what to install.
"""

from __future__ import annotations

import os

import pytest


def require(ok: bool, message: str) -> None:
    """Go on if ``ok``; otherwise fail under CI and skip elsewhere, saying ``message``."""
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
