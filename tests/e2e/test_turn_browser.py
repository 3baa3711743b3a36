"""A call relayed through a real coturn, with time-limited REST-API credentials.

coturn runs in the browsers' loopback-only network namespace; the app hands out
``turn:`` URLs and credentials and the relay-only transport policy, so the call
can only connect through TURN: the selected candidate pair is relay <-> relay.
Over UDP, and over TCP (for hospitals that block UDP).
"""

from __future__ import annotations

import dataclasses
import queue
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from web.settings import Secret, Settings

from ..requirements import require
from ..scenario import Scenario
from .conftest import (
    LOOPBACK_ADDRESSES,
    LOOPBACK_NETWORKS,
    NetNs,
    selected_pairs,
    video_flowing,
)

pytestmark = [pytest.mark.browser, pytest.mark.timing]

# The namespace is fresh, so fixed ports are free in it.
TURN_PORT = 3478
RELAY_PORTS = (49160, 49260)
READY_SECONDS = 10.0


@dataclasses.dataclass
class Coturn:
    port: int
    secret: str


@pytest.fixture
def netns(loopback_netns: NetNs) -> NetNs:
    return loopback_netns


@pytest.fixture
def coturn(netns: NetNs, tmp_path: Path) -> Iterator[Coturn]:
    """coturn on 127.0.0.1 inside the namespace, ready (bounded wait), killed afterwards."""
    turnserver = shutil.which("turnserver")
    require(turnserver is not None, "turnserver is missing (apt-get install coturn)")
    secret = secrets.token_hex(16)
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        netns.command(
            str(turnserver),
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={TURN_PORT}",
            f"--min-port={RELAY_PORTS[0]}",
            f"--max-port={RELAY_PORTS[1]}",
            "--use-auth-secret",
            f"--static-auth-secret={secret}",
            "--realm=teleconsult.test",
            "--allow-loopback-peers",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--fingerprint",
            "--log-file=stdout",
            "--simple-log",
            # Keep its files out of /var.
            f"--pidfile={tmp_path / 'turnserver.pid'}",
            f"--userdb={tmp_path / 'turndb'}",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + READY_SECONDS
    try:
        # Ready when its TCP listener accepts (probed from inside the namespace).
        while not _accepts(netns, TURN_PORT):
            if process.poll() is not None or time.monotonic() > deadline:
                seen = []
                while not lines.empty():
                    seen.append(lines.get() or "")
                pytest.fail("coturn did not start:\n" + "".join(seen[-20:]))
            time.sleep(0.05)
        yield Coturn(TURN_PORT, secret)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _accepts(netns: NetNs, port: int) -> bool:
    with netns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(0.5)
        sock.connect(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        sock.close()
    return True


@pytest.fixture(params=["udp", "tcp"])
def settings(settings: Settings, coturn: Coturn, request: pytest.FixtureRequest) -> Settings:
    return dataclasses.replace(
        settings,
        turn_urls=(f"turn:127.0.0.1:{coturn.port}?transport={request.param}",),
        turn_secret=Secret(coturn.secret),
        ice_transport_policy="relay",
        ice_allowed_networks=LOOPBACK_NETWORKS,
    )


async def test_call_through_turn(open_as: Any, scenario: Scenario, settings: Settings) -> None:
    started = time.monotonic()
    _, clinic, clinic_problems = await open_as("clinic1")
    _, cardio, cardio_problems = await open_as("cardio1", locale="en")
    cid = (await scenario.consultation("accepted")).id
    await clinic.goto(f"/consultations/{cid}/call")
    await cardio.goto(f"/consultations/{cid}/call")

    transport = settings.turn_urls[0].rsplit("=", 1)[1]
    for page in (clinic, cardio):
        await video_flowing(page, 1, label="turn", timeout_ms=30_000)
    for page in (clinic, cardio):
        for pair in await selected_pairs(page):
            assert pair["width"] > 0
            for side in ("local", "remote"):
                assert pair[side]["type"] == "relay", pair
                assert pair[side]["address"] in LOOPBACK_ADDRESSES, pair
            # Our own relay candidate was allocated over the configured transport.
            assert pair["local"]["relayProtocol"] == transport, pair
        # The quality indicator says the path is relayed.
        await page.locator('#tiles .quality[data-relayed="true"] .path-tag').wait_for()
    for page, problems in ((clinic, clinic_problems), (cardio, cardio_problems)):
        assert await problems.collect(page) == []
    print(f"TURN/{transport} call test: {time.monotonic() - started:.1f}s")
