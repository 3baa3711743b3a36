"""Three doctors in one call: the township clinic, the county hospital and the
specialist. The call is a mesh, so each page must receive both others' video.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from web.settings import Settings

from ..scenario import Scenario
from .conftest import (
    LOOPBACK_ADDRESSES,
    LOOPBACK_NETWORKS,
    NetNs,
    invite,
    selected_pairs,
    video_flowing,
)

pytestmark = [pytest.mark.browser, pytest.mark.timing]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, ice_allowed_networks=LOOPBACK_NETWORKS)


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


async def test_three_doctors_each_see_the_two_others(open_as: Any, scenario: Scenario) -> None:
    started = time.monotonic()
    _, clinic, clinic_problems = await open_as("clinic1")
    _, cardio, cardio_problems = await open_as("cardio1", locale="en")
    _, county, county_problems = await open_as("county1")
    cid = (await scenario.consultation("accepted")).id
    await invite(clinic, cid, "county1")

    pages = (clinic, cardio, county)
    for page in pages:
        await page.goto(f"/consultations/{cid}/call")
    for page in pages:
        await video_flowing(page, 2, label="three", timeout_ms=45_000)
    for page in pages:
        pairs = await selected_pairs(page)
        assert len(pairs) == 2
        for pair in pairs:
            assert pair["width"] > 0
            assert pair["local"]["address"] in LOOPBACK_ADDRESSES, pair
            assert pair["remote"]["address"] in LOOPBACK_ADDRESSES, pair
        names = await page.locator("#tiles .tile-remote .tile-name").all_text_contents()
        assert len(names) == 2
    county_tiles = await county.locator("#tiles .tile-meta").all_text_contents()
    assert any("城关镇卫生院" in m for m in county_tiles)
    for page, problems in (
        (clinic, clinic_problems),
        (cardio, cardio_problems),
        (county, county_problems),
    ):
        assert await problems.collect(page) == []
    print(f"three-party call test: {time.monotonic() - started:.1f}s")
