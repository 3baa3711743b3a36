"""Nothing holds the single writer while it waits for the network.

Reproduces the measurement in issue 10: with an unreachable STUN server in the
ICE settings, starting a recording held the write lock for the whole of aiortc's
candidate gathering (5.0 s), and an unrelated write waited 4.96 s.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection

from signaling.workflow.base import Actor
from web.app import create_app
from web.keys import DB, DIRECTORY, RECORDING
from web.settings import Settings

from ..patience import patient
from ..scenario import Scenario


@pytest.fixture
def black_hole() -> Iterator[socket.socket]:
    """A UDP socket on loopback that takes STUN requests and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.fixture
def app(settings: Settings, clock: Any, black_hole: socket.socket) -> web.Application:
    port = black_hole.getsockname()[1]
    unreachable = replace(settings, stun_urls=(f"stun:127.0.0.1:{port}",))
    return create_app(unreachable, clock=clock)


async def recording_offer() -> str:
    """A browser-like send-only offer (audio and video), made without gathering."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendonly")
    pc.addTransceiver("video", direction="sendonly")
    try:
        return (await pc.createOffer()).sdp
    finally:
        await pc.close()


async def test_an_unrelated_write_is_not_held_while_a_recording_negotiates(
    app: web.Application, scenario: Scenario, black_hole: socket.socket
) -> None:
    made = await scenario.consultation()
    clinic, consultation = made.clinic, made.json
    account = await app[DIRECTORY].account(clinic.account["id"])
    assert account is not None
    offer = await recording_offer()

    started = time.monotonic()
    negotiation = asyncio.create_task(
        app[RECORDING].start(Actor(account=account), consultation["id"], offer)
    )
    # The recorder is gathering candidates once its first STUN request arrives.
    async with asyncio.timeout(patient(5)):
        await asyncio.get_running_loop().sock_recv(black_hole, 2048)
    assert not negotiation.done()

    t0 = time.monotonic()
    await app[DB].run_write(lambda conn: conn.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)"))
    waited = time.monotonic() - t0

    answer = await negotiation
    negotiated = time.monotonic() - started
    assert "a=ice-ufrag" in answer
    assert negotiated > 1.0, f"negotiation took {negotiated:.2f} s: STUN was not in the way"
    assert waited < 0.1, f"an unrelated write waited {waited:.3f} s behind the recording"
    await app[RECORDING].close()
