"""Watermarked exports of recordings: burned in only when asked, audio copied, audited."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import sqlalchemy as sa
from av.video.frame import VideoFrame

from media.export import find_cjk_font, watermark_mask
from records.schema import audit_log
from web.keys import DB, EXPORTS

from .test_replay import recorded, recorded_calls, settings  # noqa: F401 - the fixtures


async def finished(user: Any, export: dict[str, Any]) -> dict[str, Any]:
    """Follow an export as the page does, until it is done or failed."""
    async with asyncio.timeout(60):
        while export["state"] not in ("done", "failed"):
            # The client's only view of a job on a worker thread is its status.
            await asyncio.sleep(0.1)
            status, data = await user.get(export["url"])
            assert status == 200, data
            export = data["export"]
    return export


def frames_by_pts(path: Path) -> dict[int, np.ndarray]:
    with av.open(str(path)) as c:
        return {
            f.pts: f.to_ndarray(format="gray")
            for f in c.decode(video=0)
            if isinstance(f, VideoFrame) and f.pts is not None
        }


def audio_packets(path: Path) -> tuple[str, list[tuple[int | None, bytes]]]:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        packets = [(p.pts, bytes(p)) for p in c.demux(stream) if p.size]
        return stream.codec_context.name, packets


async def actions(app: Any) -> list[tuple[str, str | None, Any]]:
    async with app[DB].read() as conn:
        rows = await conn.execute(
            sa.select(audit_log.c.action, audit_log.c.object_id, audit_log.c.detail)
        )
        return [tuple(r) for r in rows]


# Sealed at rest or not, the export reads the recording's plaintext.
@pytest.mark.parametrize("settings", ["plaintext", "aes-256-gcm"], indirect=True)
async def test_export_burns_the_viewers_watermark_in_and_copies_the_audio(
    recorded: dict[str, Any],  # noqa: F811
    login_as: Any,
    app: Any,
    tmp_path: Path,
) -> None:
    review = await login_as("review1")
    _, data = await review.get(f"/api/consultations/{recorded['cid']}/replay")
    rec = data["recordings"][0]

    # The plain download is the stored file, byte for byte.
    resp = await review.client.get(f"{rec['url']}?download=1")
    original = await resp.read()
    assert hashlib.sha256(original).hexdigest() == rec["sha256"]
    source = tmp_path / "original.webm"
    source.write_bytes(original)

    # No transcoding without a watermark.
    status, body = await review.post(f"/api/recordings/{rec['id']}/export")
    assert (status, body["error"]["fields"]) == (400, ["watermark"])

    status, body = await review.post(f"/api/recordings/{rec['id']}/export?watermark=1")
    assert status == 202, body
    export = await finished(review, body["export"])
    assert export["state"] == "done" and export["progress"] == 1.0
    who = review.account
    assert export["watermark"][0] == f"{who['display_name']} · {who['institution']['name']}"
    resp = await review.client.get(export["content_url"])
    assert resp.status == 200
    assert "watermarked" in resp.headers["Content-Disposition"]
    copy = tmp_path / "export.webm"
    copy.write_bytes(await resp.read())

    # The picture: each exported frame is the original frame with the
    # watermark's text blended in (as media.export draws it), and far from the
    # original where the text is; elsewhere only re-encoding differs.
    before, after = frames_by_pts(source), frames_by_pts(copy)
    common = sorted(set(before) & set(after))
    assert len(common) >= 0.9 * len(before) > 20
    height, width = before[common[0]].shape
    text, _ = watermark_mask(width, height, tuple(export["watermark"]), find_cjk_font())
    on_text, off_text = text > 0.3, text == 0
    assert on_text.sum() > 0.02 * text.size
    checked = 0
    for pts in common:
        plain = before[pts].astype(np.float32)
        expected = plain + (235 - plain) * text  # luma pushed towards white
        if (expected - plain)[on_text].mean() < 20:
            continue  # a frame already near white shows little either way
        got = after[pts].astype(np.float32)
        from_plain = np.abs(got - plain)[on_text].mean()
        from_expected = np.abs(got - expected)[on_text].mean()
        assert from_plain > 15 and from_expected < from_plain / 2, (pts, from_plain, from_expected)
        assert np.abs(got - plain)[off_text].mean() < 8, pts
        checked += 1
    assert checked > 10

    # The sound: the same packets, not re-encoded.
    assert audio_packets(copy) == audio_packets(source)
    # At least half a second of 20 ms packets: the call is 2 s, but in the niced
    # PostgreSQL pass a starved leg's file once held 44.
    codec, packets = audio_packets(source)
    assert codec == "opus" and len(packets) >= 25

    # The stored recording is untouched and still downloads as before.
    resp = await review.client.get(f"{rec['url']}?download=1")
    assert hashlib.sha256(await resp.read()).hexdigest() == rec["sha256"]

    # Who exported what (and which copy) is on the audit log.
    log = await actions(app)
    [entry] = [e for e in log if e[0] == "recording.export"]
    assert entry[1] == rec["id"] and entry[2]["export_id"] == export["id"]
    assert ("recording.export_download", rec["id"]) in [(a, o) for a, o, _ in log]


async def test_exports_belong_to_who_asked_and_outsiders_get_404(
    recorded: dict[str, Any],  # noqa: F811
    login_as: Any,
    app: Any,
) -> None:
    clinic = recorded["clinic"]
    _, data = await clinic.get(f"/api/consultations/{recorded['cid']}/replay")
    rec_id = data["recordings"][0]["id"]

    outsider = await login_as("clinic2")
    real = await outsider.post(f"/api/recordings/{rec_id}/export?watermark=1")
    fake = await outsider.post(f"/api/recordings/{'0' * 32}/export?watermark=1")
    assert real[0] == fake[0] == 404 and real[1] == fake[1]

    status, body = await clinic.post(f"/api/recordings/{rec_id}/export?watermark=1")
    assert status == 202
    export = body["export"]
    # Another participant of the same consultation may not follow or fetch it.
    cardio = recorded["cardio"]
    for path in (export["url"], f"{export['url']}/content"):
        theirs = await cardio.get(path)
        never = await cardio.get(f"/api/exports/{'0' * 32}")
        assert theirs[0] == never[0] == 404 and theirs[1] == never[1], path
    done = await finished(clinic, export)
    assert done["state"] == "done"
    log = await actions(app)
    denied = [o for a, o, _ in log if a == "replay.denied"]
    assert rec_id in denied and export["id"] in denied

    # Stopping the server removes the copies.
    path = app[EXPORTS].jobs[export["id"]].path
    assert path.is_file()
    await app[EXPORTS].close()
    assert not path.exists()
