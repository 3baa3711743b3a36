"""Sender processes of recording legs, connected to a recorder in the test process.

A sender script (``tests/media/sender.py``, ``tests/bench/_replay_sender.py``)
prints ``{"offer": sdp}``, reads ``{"answer": sdp}`` and prints
``{"connected": true}`` once its leg is up; what it says after that is its own.
The answer comes from a recorder in the test process (``from_host``) or from
the server over a call socket (``over_socket``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from media.host import LegHost
from media.leg import RecordingKey

ROOT = Path(__file__).resolve().parents[1]
CONNECT_TIMEOUT = 60.0


Answer = Callable[[str], Awaitable[str]]


def from_host(host: LegHost, key: RecordingKey) -> Answer:
    """Answers from ``host`` itself (a ``Recorder`` or a ``WorkerPool``) as the leg ``key``."""
    return lambda offer: host.start(key, offer, now=datetime.now(UTC))


def over_socket(sock: Any) -> Answer:
    """Answers from the server, asked over a call socket (``rec_offer``, ``rec_answer``)."""

    async def answer(offer: str) -> str:
        await sock.send({"type": "rec_offer", "sdp": offer})
        reply = await sock.recv("rec_answer", "error")
        assert reply["type"] == "rec_answer", reply
        return str(reply["sdp"])

    return answer


async def start_sender(answer: Answer, script: Path, *args: str) -> asyncio.subprocess.Process:
    """Run ``script`` and hand its offer to ``answer``; returns once the leg is
    connected. The caller reads the rest and ends the process (it is killed
    here if it fails sooner)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdin and proc.stdout
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            offer = json.loads(await proc.stdout.readline())["offer"]
            proc.stdin.write((json.dumps({"answer": await answer(offer)}) + "\n").encode())
            await proc.stdin.drain()
            assert json.loads(await proc.stdout.readline()) == {"connected": True}
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return proc
