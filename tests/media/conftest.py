"""Fixtures of the media tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiortc.codecs
import av
import pytest


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
