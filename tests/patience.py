"""How long a test waits for what should come soon.

A wait in a test bounds a hang; it measures nothing. The PostgreSQL pass runs at
nice 19 beside the timing tests (see the Makefile) and gets a CPU only when they
leave one idle, so what takes a second alone can take several there. The
Makefile sets ``TELECONSULT_TEST_PATIENCE`` for that pass, and the waits that
sender processes and the server's pushes go through are stretched by it.
"""

from __future__ import annotations

import os

PATIENCE = float(os.environ.get("TELECONSULT_TEST_PATIENCE", "1"))


def patient(seconds: float) -> float:
    """``seconds`` as this run can afford to wait for it."""
    return seconds * PATIENCE
