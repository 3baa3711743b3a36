"""A relayed call whose recording disk fills: the live call goes on.

In a relayed call a participant's recording leg is also their only uplink: the
others see them through the server. When the leg's file cannot be written (the
disk is full), the part ends with what was written and the leg keeps its
connection and its relay; once there is room again, the same leg records into a
new part, without renegotiating anything.

The disk is real: the recordings live on a small tmpfs (``tests/fullfs.py``)
that the test fills mid-call. The sender is a real aiortc peer in another
process and the viewer a real aiortc peer here, as in ``test_relay.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiortc.codecs.vpx import VpxPayloadDescriptor

from media.leg import LegResult, RecordingKey
from media.recorder import Recorder
from media.relay import Fanout

from ..fullfs import fill, tmpfs
from .test_recorder import probe, send
from .test_relay import KEY, Viewer, leg_started, until


@pytest.fixture
async def recorder(tmp_path: Path) -> AsyncIterator[Recorder]:
    # A 4 MiB disk of its own: the test fills it when it chooses.
    with tmpfs(tmp_path / "disk", 4 * 1024 * 1024) as disk:
        rec = Recorder(disk / "recordings", host_addresses=["127.0.0.1"], keyframe_interval=2.0)
        yield rec
        await rec.close()


class SourceFrames:
    """Every video frame the recorder takes from a source, from now on.

    The relay hands each viewer the source's packets as they arrive, so the
    frames these packets make are the bytes the source sent (after RTP
    depacketization)."""

    def __init__(self, recorder: Recorder) -> None:
        self.packets: dict[int, dict[int, bytes]] = {}  # timestamp -> seq -> data
        original = Fanout.forward_packet

        def forward_packet(self_: Fanout, marker: bool, seq: int, ts: int, payload: bytes) -> None:
            _, data = VpxPayloadDescriptor.parse(payload)
            self.packets.setdefault(ts, {})[seq] = data
            original(self_, marker, seq, ts, payload)

        for leg in recorder.legs.values():
            assert leg.fanout is not None
            leg.fanout.forward_packet = forward_packet.__get__(leg.fanout)  # type: ignore[method-assign]

    def hashes(self) -> set[str]:
        """The frames' SHA-256 (a frame's packets joined in sequence order)."""
        out = set()
        for parts in self.packets.values():
            some = next(iter(parts))  # a frame's numbers lie close together, maybe across 0
            order = sorted(parts, key=lambda seq: (seq - some + 0x8000) & 0xFFFF)
            out.add(hashlib.sha256(b"".join(parts[seq] for seq in order)).hexdigest())
        return out


@pytest.mark.slow
async def test_a_full_disk_ends_the_part_but_not_the_relay_and_the_leg_records_again(
    recorder: Recorder, no_codecs: list[str]
) -> None:
    failed: list[LegResult] = []
    told = asyncio.Event()

    def on_writing_failed(result: LegResult) -> None:
        failed.append(result)
        told.set()

    recorder.on_writing_failed = on_writing_failed
    started = leg_started(recorder)
    sending = asyncio.ensure_future(send(recorder, KEY, "--seconds", "12"))
    await started.wait()
    source = SourceFrames(recorder)
    viewer = Viewer()
    filler: Path | None = None
    try:
        await viewer.join(recorder, KEY, "viewer-1")
        await until(lambda: len(viewer.frames["video"]) >= 30, viewer.progress)
        leg = recorder.legs[KEY]
        assert leg.writer is not None
        assert await until_written(leg.writer.stats, 20)
        # The disk fills mid-call.
        filler = fill(recorder.directory)
        async with asyncio.timeout(20):
            await told.wait()
        # The part ended with an error that says why, and the leg did not.
        [result] = failed
        assert result.key == KEY
        assert result.error and "No space left on device" in result.error, result.error
        assert recorder.legs.get(KEY) is leg and not leg.done.is_set()
        assert leg.pc.connectionState == "connected"
        # The viewer keeps receiving the source's frames, byte for byte.
        before = len(viewer.frames["video"])
        await until(lambda: len(viewer.frames["video"]) >= before + 45, viewer.progress)
        after = viewer.frames["video"][before:]
        got = {hashlib.sha256(f.data).hexdigest() for f in after}
        assert got <= source.hashes(), "relayed frames must be the source's own bytes"
        assert viewer.frames["audio"], "audio is relayed too"

        # Room on the disk again: the same leg records into part 2.
        filler.unlink()
        filler = None
        part2 = RecordingKey(KEY.consultation_id, KEY.participant_id, 2)
        await recorder.resume(KEY, part2, now=datetime.now(UTC))
        assert recorder.legs[part2] is leg and KEY not in recorder.legs
        assert leg.writer is not None
        assert await until_written(leg.writer.stats, 20)
        during = len(viewer.frames["video"])
        await sending
        assert len(viewer.frames["video"]) > during, "the relay carried on through the resume"
    finally:
        await viewer.close()
        if filler is not None:
            filler.unlink(missing_ok=True)
    second = await recorder.stop(part2)
    assert second is not None and second.file is not None, second
    assert second.file.path.name == "s" * 32 + "-part2.webm"
    described = probe(second.file.path)
    assert described["first_keyframe"] is True
    assert described["video_frames"] >= 30
    # Nothing written before the disk filled is lost: the first part's file is
    # either finished or still there to repair (finishing it needs room too).
    first = result.file.path if result.file else recorder.partial_path(KEY, "webm")
    assert first.exists() and first.stat().st_size > 0


async def until_written(stats: object, seconds: float) -> bool:
    """Wait (polling the writer thread's counters) until video frames reach the file."""
    async with asyncio.timeout(seconds):
        while True:
            if getattr(stats, "video_packets", 0) >= 10:
                return True
            await asyncio.sleep(0.05)  # a counter the writer thread keeps
