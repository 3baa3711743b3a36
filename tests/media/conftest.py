"""Fixtures of the media tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import aiortc.codecs
import av
import pytest

from media.worker import new_loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """A test marked ``both_loops`` runs twice: on asyncio's own loop (a web
    process that records itself) and on the media workers' (uvloop), whose
    sockets the recorder cannot read itself (``media/reading.py``)."""
    if item.get_closest_marker("both_loops") is None:
        return {"asyncio": asyncio.new_event_loop}  # one factory: no test id added
    return {"asyncio": asyncio.new_event_loop, "uvloop": new_loop}


@pytest.fixture
def no_codecs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail if anything in this (the server's) process creates an encoder or decoder."""
    made: list[str] = []

    def forbid(name: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            made.append(name)
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        aiortc.codecs, "get_decoder", forbid("get_decoder", aiortc.codecs.get_decoder)
    )
    monkeypatch.setattr(
        aiortc.codecs, "get_encoder", forbid("get_encoder", aiortc.codecs.get_encoder)
    )
    monkeypatch.setattr(
        av.CodecContext, "create", forbid("CodecContext.create", av.CodecContext.create)
    )
    yield made
    assert made == [], f"the server process made codecs: {made}"
