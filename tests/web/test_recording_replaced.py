"""A participant's recording leg replaced by a new one (a reload), through the real server.

The old leg's page is gone: it cannot resend the packets its last frames still
miss. The new leg is answered only once the old one has ended (one page, one
leg), so the old one must not spend up to 2 s asking that page again: in the
relay plane the new page's video reaches nobody until its leg is answered.

Legs are sender processes (``tests/media/sender.py``) signaled over the real
WebSocket, with the recorder in the web process and in a media worker (the
``stop`` crosses the worker's RPC).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from web.keys import RECORDING
from web.settings import Settings

from ..patience import patient
from ..scenario import Scenario
from ..senderproc import over_socket, start_sender
from .test_recording import SENDER, leg
from .test_recording_truth import rows


@pytest.fixture(params=[0, 1], ids=["in-process", "media-worker"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return dataclasses.replace(settings, media_workers=request.param)


async def test_a_replaced_leg_ends_at_once_and_the_new_one_records(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    a, b = c.sockets["clinic1"], c.sockets["cardio1"]
    clinic = c.clinic.account["id"]
    # The old page's last packet is lost, and so is its first resend; then the
    # page goes quiet (it still answers NACKs here, as a page that is gone would not).
    old = await start_sender(over_socket(a), SENDER, "--seconds", "2", "--lose-last-twice")
    try:
        assert old.stdin and old.stdout
        assert (await b.recv("recording"))["state"] == "recording"
        async with asyncio.timeout(patient(30)):
            assert json.loads(await old.stdout.readline()) == {"ending": True}
        # The page reloads and offers its new leg.
        async with leg(a, "--seconds", "60"):
            states = []
            while (msg := await b.recv("recording"))["state"] != "recording":
                states.append(msg["state"])
            assert states == ["stopped"]
            old.stdin.write(b"close\n")
            await old.stdin.drain()
            async with asyncio.timeout(patient(30)):
                sent = json.loads(await old.stdout.readline())["sent"]
            # Asked once before the end (the next packet revealed the hole),
            # never again after it: the old leg did not wait on its page.
            assert sent["dropped"] == 2 and sent["feedback"]["nack"] == 1, sent
            found = await rows(app)
            assert [(r["part"], r["status"]) for r in found] == [(1, "finished"), (2, "recording")]
            assert found[0]["sha256"] and found[0]["duration_ms"] > 1000, found[0]
            assert app[RECORDING].is_recording(c.id, clinic)
    finally:
        if old.returncode is None:
            old.kill()
            await old.wait()
