"""The replay benchmark's fast sender still sends what it says.

Not a performance test; it keeps ``_replay_sender.py`` (the 60-minute case of
``replay.py``) working without running that benchmark: a short leg of
``--media-seconds`` sent ``--speed`` times faster than real time into the real
recorder, whose file holds a call of the media's length.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import av
import pytest

from media.leg import RecordingKey
from media.recorder import Recorder

from ..senderproc import from_host, start_sender
from .recording import encode_input

SENDER = Path(__file__).with_name("_replay_sender.py")
MEDIA_SECONDS = 6.0
SPEED = 6.0


@pytest.mark.slow
async def test_the_fast_sender_sends_its_media_seconds_faster_than_real_time(
    tmp_path: Path,
) -> None:
    source = tmp_path / "input.webm"
    encode_input(source, seconds=2)
    recorder = Recorder(tmp_path / "recordings", host_addresses=["127.0.0.1"])
    key = RecordingKey("c" * 32, "p" * 32)
    try:
        proc = await start_sender(
            from_host(recorder, key),
            SENDER,
            *("--input", str(source)),
            *("--media-seconds", str(MEDIA_SECONDS), "--speed", str(SPEED)),
        )
        assert proc.stdin and proc.stdout
        try:
            began = time.monotonic()
            async with asyncio.timeout(60):
                assert json.loads(await proc.stdout.readline()) == {"done": True}
                took = time.monotonic() - began
                proc.stdin.close()  # the sender stays until its stdin closes
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        result = await recorder.stop(key)
    finally:
        await recorder.close()
    assert took < MEDIA_SECONDS, took  # faster than real time (about 1 s here)
    assert result is not None and result.file is not None, result
    with av.open(str(result.file.path)) as container:
        duration = (container.duration or 0) / 1e6
        video = sum(1 for p in container.demux(video=0) if p.size)
    assert abs(duration - MEDIA_SECONDS) <= 0.5, duration
    assert video >= 0.95 * MEDIA_SECONDS * 30, video
