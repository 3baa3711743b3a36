"""What the records keep of each recording leg: the transaction bodies of the
recording service (a finished, failed, interrupted or recovered leg, and its
place on the session's clock)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from media.finalize import FinishedFile
from media.leg import LegResult
from media.repair import Repaired
from records import store
from records.models import Event, Recording
from records.vocab import EventKind
from signaling.workflow.base import Tx


def mark_recovered(
    tx: Tx, *, relative: str, item: Repaired, retention: timedelta
) -> Recording | None:
    """Record the outcome of repairing one recording (None: not in the records)."""
    rec = store.recording_by_path(tx.conn, relative)
    if rec is None:
        return None
    now = tx.now
    finished = item.file
    if finished is None:
        store.update_recording(
            tx.conn, rec.id, status="failed", error=(item.error or "")[:500], finished_at=now
        )
    else:
        # The file's time 0 on the session's clock: its leg's start plus where
        # the first media arrived (noted while writing; unknown: the start).
        start = rec.started_at + timedelta(seconds=item.first_media_offset or 0.0)
        store.update_recording(
            tx.conn,
            rec.id,
            **file_values(finished),
            status="recovered",
            offset_ms=offset_from(tx.conn, rec.consultation_id, start),
            finished_at=now,
            retain_until=now + retention,
        )
    tx.event(
        rec.consultation_id,
        EventKind.RECORDING_RECOVERED if finished else EventKind.RECORDING_FAILED,
        {"recording_id": rec.id},
        at=now,
        by_actor=False,
    )
    tx.audit("recording.recover", "recording", rec.id, ok=finished is not None)
    interrupted(tx, rec, reason="server stopped")
    return store.get_recording(tx.conn, rec.id)


def interrupted(tx: Tx, rec: Recording, *, reason: str) -> Event | None:
    """Put ``recording_interrupted`` on the timeline if the call is live: the
    participant is no longer being recorded (until their page opens a new leg)."""
    consultation = store.get_consultation(tx.conn, rec.consultation_id)
    if consultation is None or consultation.state != "live":
        return None
    eid = store.add_event(
        tx.conn,
        consultation_id=rec.consultation_id,
        at=tx.now,
        kind=EventKind.RECORDING_INTERRUPTED,
        actor_id=rec.participant_id,
        data={"recording_id": rec.id, "reason": reason[:200]},
    )
    tx.audit("recording.interrupted", "recording", rec.id)
    return next(e for e in store.list_events(tx.conn, rec.consultation_id, after_id=eid - 1))


def session_offset(conn: sa.Connection, consultation_id: str, result: LegResult) -> int:
    """Milliseconds from the session's start (it went live) to the file's time 0."""
    start = result.started_at + timedelta(seconds=result.first_media_offset or 0.0)
    return offset_from(conn, consultation_id, start)


def offset_from(conn: sa.Connection, consultation_id: str, start: datetime) -> int:
    """Milliseconds from the session's start (it went live) to ``start``."""
    live = [e.at for e in store.list_events(conn, consultation_id) if e.kind == "live"]
    origin = live[0] if live else start
    return round((start - origin).total_seconds() * 1000)


def file_values(finished: FinishedFile) -> dict[str, Any]:
    return {
        "duration_ms": round(finished.duration * 1000),
        "size": finished.size,
        "sha256": finished.sha256,
        "video_codec": finished.video_codec,
        "audio_codec": finished.audio_codec,
    }
