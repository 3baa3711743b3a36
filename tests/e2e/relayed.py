"""The fixtures of a relayed call's browser tests, taken by name from each file.

``settings`` overrides the suite's own (``tests/conftest.py``), so it cannot
live in ``tests/e2e/conftest.py``, where every browser test would get it: a
test file that wants a relayed call imports both fixtures from here
(``from .relayed import netns, settings``).
"""

from __future__ import annotations

import dataclasses

import pytest

from web.settings import Settings

from .conftest import NetNs


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with the media plane relayed by the server."""
    return dataclasses.replace(settings, media_plane="relay")


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    """The loopback-only network namespace the pages and the recorder live in."""
    return loopback_netns
