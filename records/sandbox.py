"""Run a parser of untrusted bytes in a child process with a memory and a time limit.

An uploaded file can be built to expand enormously when decoded (a deflated DICOM
data set, an RLE frame, a PNG). The parsers check the sizes a file announces
before decoding (``records.filetypes``), but the last line of defence is that all
parsing runs in a separate process whose address space is capped with
``RLIMIT_AS`` (an allocation past it fails with ``MemoryError``), whose CPU time is
capped with ``RLIMIT_CPU``, and which is killed after a wall-clock timeout. The
server process itself never holds a decoded file.

Children are forked from multiprocessing's *forkserver*, a clean process started
once that has the parsers imported already: a child costs tens of milliseconds,
not the second a fresh interpreter needs, and never inherits the server's threads,
sockets or open files. Everything here blocks: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

_CTX = multiprocessing.get_context("forkserver")
# Imported once in the forkserver, so that each child starts with them loaded
# (``records.filetypes`` imports its parsers only where it uses them).
_CTX.set_forkserver_preload(["records.filetypes", "records.dicomfile", "pypdf", "PIL.Image"])

Send = Callable[[Any], None]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a child sent before it ended, and why it ended early (if it did).

    ``failure`` is None when the work returned; ``"memory"`` when it ran out of
    its address space, ``"timeout"`` when it was killed for taking too long,
    ``"crashed"`` when it died otherwise (a signal, an exception).
    """

    messages: list[Any]
    failure: str | None


def _child(conn: Connection, memory_bytes: int, cpu_seconds: int, work: Any, args: Any) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    try:
        work(conn.send, *args)
        conn.send(("done", None))
    except MemoryError:
        conn.send(("failed", "memory"))
    # Whatever else a parser raises has to reach the parent as a failure, not as
    # a traceback on the server's stderr (it could quote file content).
    except BaseException as exc:
        conn.send(("failed", type(exc).__name__))
    finally:
        conn.close()


def run_limited(
    work: Callable[..., None],
    *args: Any,
    memory_bytes: int,
    timeout: float,
) -> Outcome:
    """Run ``work(send, *args)`` in a child; collect what it ``send``s.

    Args:
        work: a module-level function (it is pickled by reference); it reports
            results by calling ``send`` with picklable values, so that what it
            sent before dying of a limit is not lost.
        args: picklable arguments.
        memory_bytes: the child's address-space limit (``RLIMIT_AS``).
        timeout: seconds of wall-clock time before the child is killed.

    Returns:
        The messages and how the child ended.
    """
    receiver, sender = _CTX.Pipe(duplex=False)
    process = _CTX.Process(
        target=_child,
        args=(sender, memory_bytes, max(1, int(timeout) + 1), work, args),
        daemon=True,
    )
    process.start()
    sender.close()
    messages: list[Any] = []
    failure: str | None = "crashed"
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not receiver.poll(remaining):
                failure = "timeout"
                break
            try:
                tag, value = receiver.recv()
            except EOFError:
                break
            if tag == "done":
                failure = None
                break
            if tag == "failed":
                failure = "memory" if value == "memory" else "crashed"
                break
            messages.append((tag, value))
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()
        process.close()
    return Outcome(messages=messages, failure=failure)
