"""What a test that hung was waiting for.

pytest-timeout (``timeout`` in pyproject.toml) turns a hang into a failure that
names its test, by SIGALRM in the main thread. Its own report shows the main
thread's stack, which for an asyncio test is the event loop's ``select()``: no
use. ``tasks_text`` gives what the loop's tasks were each waiting on, and the
stacks of the other threads; ``pytest_timeout_set_timer`` (a hook, imported
into conftest.py) puts it into the failure's message, which is all a CI log
keeps of a hang.
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys
import threading
import traceback
from typing import Any

import pytest


def tasks_text() -> str:
    """The running loop's tasks with their stacks, then the other threads' stacks."""
    out = io.StringIO()
    # Called from a signal handler in the main thread: while the loop is in
    # select() it is still this thread's running loop.
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        out.write("no asyncio loop was running\n")
    else:
        tasks = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
        out.write(f"{len(tasks)} asyncio task(s) pending:\n")
        for task in tasks:
            out.write(f"--- {task!r}\n")
            task.print_stack(limit=12, file=out)
    main = threading.main_thread().ident
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident != main:
            out.write(f"--- thread {names.get(ident, ident)}\n")
            out.write("".join(traceback.format_stack(frame, limit=12)))
    return out.getvalue()


@pytest.hookimpl(wrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Any:
    """A test that outlives ``timeout`` (pyproject.toml) fails with what its event
    loop's tasks were waiting on, not only the loop's select()."""
    result = yield
    if callable(signal.getsignal(signal.SIGALRM)):  # pytest-timeout's "signal" method

        def hung(signum: int, frame: Any) -> None:
            __tracebackhide__ = True
            pytest.fail(f"Timeout >{settings.timeout}s\n{tasks_text()}")

        signal.signal(signal.SIGALRM, hung)
    return result
