"""A relayed call whose recording disk fills, through the real server.

The clinic's leg is a real aiortc sender (another process) and the
specialist's receiving side a real aiortc peer here, signaled over ``/ws`` (as
in ``test_relay.py``). The recordings live on a small tmpfs of their own
(``tests/fullfs.py``) that the test fills mid-call and frees again.

What a hospital expects: the specialist keeps seeing the clinic on the same
relay link (the live call matters more than the file), every page and the
timeline say the clinic is not being recorded and why, what was written is
kept in the records, and once the disk has room again the same leg is recorded
into the next part without anyone clicking anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from media.leg import RecordingKey
from records.schema import recordings
from signaling.workflow.kept_legs import failure_reason
from web.keys import DB, RECORDING
from web.settings import Settings

from ..fullfs import fill, tmpfs
from ..patience import patient
from ..scenario import Scenario
from .calls import Socket
from .test_recording import leg
from .test_relay import video_frames, watch


@pytest.fixture(params=[0, 1], ids=["in-process", "media-worker"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    # The recorder in the web process, and in a media worker process (the
    # default of `teleconsult serve`): the failure and the resumption cross it.
    return dataclasses.replace(settings, media_plane="relay", media_workers=request.param)


async def messages_until(
    sock: Socket, check: Callable[[dict[str, Any]], bool], seconds: float = 30
) -> list[dict[str, Any]]:
    """Every message ``sock`` receives up to and with the first that passes ``check``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(seconds):
        while True:
            msg = await sock.recv(within=seconds)
            seen.append(msg)
            if check(msg):
                return seen


async def parts(app: Any, participant_id: str) -> list[Any]:
    async with app[DB].read() as conn:
        query = (
            sa.select(recordings)
            .where(recordings.c.participant_id == participant_id)
            .order_by(recordings.c.part)
        )
        return list((await conn.execute(query)).mappings())


async def until_stored(app: Any, participant_id: str) -> list[Any]:
    """The participant's parts, once none is ``recording`` any more."""
    async with asyncio.timeout(patient(20)):
        while True:
            found = await parts(app, participant_id)
            if found and found[-1]["status"] != "recording":
                return found
            await asyncio.sleep(0.05)  # polling the records for a condition


async def until_written(service: Any, key: RecordingKey, frames: int) -> None:
    """Until the running leg ``key`` has written ``frames`` video frames to its file."""
    async with asyncio.timeout(patient(20)):
        while True:
            counts = service.recorder.leg_counts().get(key)
            if counts is not None and counts.video_written >= frames:
                return
            await asyncio.sleep(0.05)  # polling the recorder's counts for a condition


async def test_a_full_disk_keeps_the_relayed_picture_says_why_and_records_again_when_freed(
    scenario: Scenario, app: Any
) -> None:
    service = app[RECORDING]
    # The same check as /readyz, with a threshold this small disk can meet.
    service.kept.min_free_bytes = 512 * 1024
    service.kept.check_seconds = 0.2
    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    a, b = c.sockets["clinic1"], c.sockets["cardio1"]
    clinic = c.clinic.account["id"]
    with tmpfs(service.root, 4 * 1024 * 1024):
        async with leg(a, "--codec", "vp8", "--seconds", "60"):
            offer = await b.recv("relay_offer")
            pc, frames = await watch(b, offer)
            try:
                await video_frames(frames, 15)
                assert service.is_recording(c.id, clinic)
                filler = fill(service.root)
                seen = await messages_until(b, lambda m: m["type"] == "recording")
                told = seen[-1]
                assert told["peer_id"] == clinic
                assert told["state"] in ("interrupted", "failed"), seen
                assert told.get("kept") is True and told["reason"] == "disk_full", seen
                seen += await messages_until(b, lambda m: m["type"] == "event")
                event = seen[-1]["event"]
                assert event["kind"] == "recording_interrupted"
                assert event["actor_id"] == clinic
                assert "No space left" in event["data"]["reason"]
                # The clinic's page is told too (and keeps its leg: nothing to reopen).
                mine = await messages_until(
                    a, lambda m: m["type"] == "recording" and m["state"] != "recording"
                )
                assert mine[-1]["kept"] is True and mine[-1]["reason"] == "disk_full"
                assert not service.is_recording(c.id, clinic)
                assert service.has_leg(c.id, clinic)
                # The picture goes on, on the same relay link: 1.5 s more of it.
                while not frames.empty():
                    frames.get_nowait()
                after = await video_frames(frames, 45)
                assert pc.connectionState == "connected"
                assert len({f.data for f in after}) > 1, "the frames keep changing"
                [first] = await parts(app, clinic)
                assert first["status"] in ("finished", "failed")
                assert first["error"] and "No space left" in first["error"]

                # Room again: the same leg is recorded into part 2, by itself.
                filler.unlink()
                seen += await messages_until(b, lambda m: m["type"] == "recording")
                assert seen[-1] == {"type": "recording", "peer_id": clinic, "state": "recording"}
                seen += await messages_until(b, lambda m: m["type"] == "event")
                started = seen[-1]["event"]
                assert started["kind"] == "recording_started"
                assert started["data"]["part"] == 2 and started["data"]["resumed"] is True
                assert [m for m in seen if m["type"] == "relay_offer"] == [], (
                    "nothing was renegotiated"
                )
                assert service.is_recording(c.id, clinic)
                # What part 1 holds was finished (and hashed) once there was room.
                first, second = await parts(app, clinic)
                assert first["status"] == "finished" and first["sha256"], first
                assert first["duration_ms"] > 500 and "No space left" in first["error"]
                assert second["status"] == "recording"
                await video_frames(frames, 30)
                # Part 2 starts at the keyframe asked for on resuming, which a
                # starved sender can be slow to make: a second of it, then stop.
                await until_written(service, RecordingKey(c.id, clinic, part=2), 30)
                assert pc.connectionState == "connected"
                # The clinic leaves: part 2 is stored with its file.
                await a.send({"type": "rec_stop"})
                found = await until_stored(app, clinic)
            finally:
                await pc.close()
    assert [r["part"] for r in found] == [1, 2]
    assert found[1]["status"] == "finished", found[1]
    assert found[1]["duration_ms"] > 500 and found[1]["sha256"]
    status, timeline = await c.clinic.get(f"{c.url}/timeline")
    assert status == 200
    kinds = [e["kind"] for e in timeline["events"]]
    assert kinds.count("recording_started") == 2
    assert "recording_interrupted" in kinds


def test_the_pages_are_told_a_full_disk_as_such_and_any_other_write_error_as_one() -> None:
    # The writer's error as the recorder reports it (repr of PyAV's OSError).
    full = "OSError(28, 'No space left on device')"
    assert failure_reason(full) == "disk_full"
    assert failure_reason("[Errno 122] Disk quota exceeded") == "disk_full"
    assert failure_reason("OSError(5, 'Input/output error')") == "write_failed"
    assert failure_reason("PermissionError(13, 'Permission denied')") == "write_failed"
    assert failure_reason(None) == "write_failed"
