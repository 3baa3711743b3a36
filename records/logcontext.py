"""Which consultation a log line concerns, carried by the context rather than by arguments.

The web layer binds the consultation of a request or a call message
(``bound``); asyncio tasks started meanwhile inherit it, and so do the
recorder's writer threads (they start inside a copy of the context). A logging
filter (``web/logs.py``) reads it, so every line written while handling one
consultation carries its id whatever module wrote it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

consultation_id: ContextVar[str | None] = ContextVar("consultation_id", default=None)


@contextmanager
def bound(cid: str | None) -> Iterator[None]:
    """Within the block (and the tasks it starts), log lines concern ``cid``."""
    if cid is None:
        yield
        return
    token = consultation_id.set(cid)
    try:
        yield
    finally:
        consultation_id.reset(token)
