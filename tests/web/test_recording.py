"""Recording through the real server: consent, the leg, the row, the file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import av
import sqlalchemy as sa

from records.schema import recordings
from web.keys import DB, RECORDING

from ..scenario import Scenario
from ..senderproc import over_socket, start_sender
from ..signaling.wire import REC_OFFER
from .calls import LEG_END_TIMEOUT

ROOT = Path(__file__).parents[2]
SENDER = ROOT / "tests" / "media" / "sender.py"


@asynccontextmanager
async def leg(sock: Any, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A running recording leg (a sender process) answered over ``sock``; killed after."""
    proc = await start_sender(over_socket(sock), SENDER, *args)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def record_leg(sock: Any, *args: str) -> dict[str, Any]:
    """Run a sender process as the participant's recording leg, signaled over /ws,
    to its end; what it sent."""
    async with leg(sock, *args) as proc:
        assert proc.stdout
        async with asyncio.timeout(60):
            sent: dict[str, Any] = json.loads(await proc.stdout.readline())["sent"]
            assert await proc.wait() == 0
    return sent


async def rows(app: Any) -> list[Any]:
    async with app[DB].read() as conn:
        return list((await conn.execute(sa.select(recordings))).mappings())


async def test_a_consented_call_is_recorded_into_a_checked_file(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    clinic, cid, a, b = c.clinic, c.id, c.sockets["clinic1"], c.sockets["cardio1"]
    assert c.joins["clinic1"]["recording"]["allowed"] is True
    sent = await record_leg(a, "--codec", "vp8", "--seconds", "3")
    assert (await b.recv("recording"))["state"] == "recording"
    # The sender closed its leg by itself, without rec_stop, while its
    # participant stayed in the live call: they are no longer being recorded.
    assert (await b.recv("recording", within=LEG_END_TIMEOUT))["state"] == "interrupted"
    interrupted = (await b.recv("event"))["event"]
    assert interrupted["kind"] == "recording_interrupted"
    assert interrupted["actor_id"] == clinic.account["id"]
    await a.send({"type": "rec_stop"})

    [row] = await rows(app)
    assert row["status"] == "finished", row
    assert row["participant_id"] == clinic.account["id"] and row["part"] == 1
    assert row["video_codec"] == "vp8" and row["audio_codec"] == "opus"
    # The file is as long as the media sent (by its own clock, which a starved
    # sender's lags behind the wall time).
    assert abs(row["duration_ms"] / 1000 - sent["media_seconds"]) <= 0.2, (row, sent)
    path = app[RECORDING].root / row["path"]
    assert row["size"] == path.stat().st_size
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames - sent["video"]) <= 0.05 * sent["video"], (frames, sent)
    _, data = await clinic.get(f"/api/consultations/{cid}/timeline")
    kinds = [e["kind"] for e in data["events"]]
    assert "recording_started" in kinds and "recording_finished" in kinds
    assert kinds.index("recording_interrupted") > kinds.index("recording_finished")
    checks = await app[RECORDING].files.verify()
    assert [c.ok for c in checks] == [True]


async def test_nothing_is_recorded_without_consent_to_recording(
    scenario: Scenario, app: Any
) -> None:
    c = await scenario.consultation(
        "accepted", patient="陈阿姨", consent=("consultation",), joined=("clinic1",)
    )
    a = c.sockets["clinic1"]
    assert c.joins["clinic1"]["recording"]["allowed"] is False
    # An offer in shape (one that is not is refused before consent is looked at).
    await a.send({"type": "rec_offer", "sdp": REC_OFFER})
    error = await a.recv("error")
    assert error["code"] == "recording_not_consented"
    assert await rows(app) == []
    recordings_dir = app[RECORDING].root
    assert not recordings_dir.exists() or not any(recordings_dir.rglob("*"))


async def test_verify_reports_a_changed_file_and_purge_refuses_young_recordings(
    scenario: Scenario, app: Any, clock: Any
) -> None:
    a = (await scenario.consultation("accepted", joined=("clinic1",))).sockets["clinic1"]
    await record_leg(a, "--codec", "vp8", "--seconds", "1")
    await a.send({"type": "rec_stop"})
    # The sender closed its leg as it exited: the server stores the file when it
    # sees that ("interrupted"), or at rec_stop if that came first ("stopped").
    # rec_stop after the leg's own end does not wait for that store (a PostgreSQL
    # run once verified before the row was finished, and found no file).
    while (await a.recv("recording", within=LEG_END_TIMEOUT))["state"] == "recording":
        pass
    [row] = await rows(app)
    assert row["status"] == "finished", row
    service = app[RECORDING]
    path = service.root / row["path"]
    with path.open("r+b") as fh:  # flip one byte in the middle
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    [check] = await service.files.verify()
    assert (check.ok, check.problem) == (False, "SHA-256 mismatch")

    from signaling.errors import RuleViolation

    try:
        await service.files.purge([row["id"]])
    except RuleViolation as exc:
        assert exc.code == "retention_not_reached"
    else:
        raise AssertionError("purge of a young recording was not refused")
    assert path.exists()
    assert await service.files.purge() == []  # nothing is old enough
    clock.advance(1096 * 86400 + 1)
    purged = await service.files.purge()
    assert [r.id for r in purged] == [row["id"]] and not path.exists()
