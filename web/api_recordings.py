"""Replay API: find recorded consultations, open a replay, stream or download files.

Streaming and download are byte copies of the stored file. Only an explicit
export (``POST /api/recordings/{id}/export?watermark=1``) re-encodes: it makes a
copy with the caller's watermark burned in, followed at ``/api/exports/{id}``.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from records.models import Account, Recording
from records.vocab import ErrorCode
from signaling.workflow.replay import ExportJob, Filters, Replay
from web.auth import actor
from web.errors import api_error
from web.keys import DIRECTORY, EXPORTS, KEYRING, REPLAY, SESSION_MS
from web.openapi import DATETIME, ID, INTEGER, MAX_QUERY_INT, Route
from web.payloads import Directory, iso, person_ref
from web.ranged import stored_file

MEDIA_TYPES = {"webm": "video/webm", "mp4": "video/mp4"}
MAX_PER_PAGE = 100


def _param(request: web.Request, name: str, kind: type) -> Any:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        if kind is datetime:
            value = datetime.fromisoformat(raw)
            if value.tzinfo is None:
                raise ValueError("needs a time zone")
            # Compared in UTC: a time that has none (0001-01-01T00:00+01:00) is refused
            # here rather than failing in the query.
            return value.astimezone(UTC)
        if kind is int:
            number = int(raw)
            # Beyond a 32-bit count, SQLite's integers would overflow in the query.
            if not 0 <= number <= MAX_QUERY_INT:
                raise ValueError("out of range")
            return number
        if len(raw) != 32 or any(c not in "0123456789abcdef" for c in raw):
            raise ValueError("not an id")
        return raw
    except (ValueError, OverflowError):
        raise api_error(ErrorCode.INVALID_FIELDS, f"bad value for {name}", [name]) from None


def _recording_json(
    rec: Recording, people: dict[str, Account], directory: Directory
) -> dict[str, Any]:
    who = people.get(rec.participant_id)
    return {
        "id": rec.id,
        "participant": {
            **(person_ref(who) or {}),
            "role": who.role if who else None,
            "institution": directory.institution(who.institution_id)["name"] if who else None,
        },
        "part": rec.part,
        "offset_ms": rec.offset_ms or 0,
        "duration_ms": rec.duration_ms,
        "container": rec.container,
        "video_codec": rec.video_codec,
        "audio_codec": rec.audio_codec,
        "sha256": rec.sha256,
        "status": rec.status,
        "started_at": iso(rec.started_at),
        "url": f"/api/recordings/{rec.id}/content",
    }


async def search(request: web.Request) -> web.StreamResponse:
    """Recorded consultations the caller may replay, with filters and paging."""
    filters = Filters(
        started_from=_param(request, "from", datetime),
        started_to=_param(request, "to", datetime),
        department_id=_param(request, "department_id", str),
        clinic_id=_param(request, "clinic_id", str),
        specialist_id=_param(request, "specialist_id", str),
        min_duration_ms=_param(request, "min_duration_ms", int),
        max_duration_ms=_param(request, "max_duration_ms", int),
    )
    page = _param(request, "page", int) or 1
    per_page = _param(request, "per_page", int) or 20
    if per_page > MAX_PER_PAGE:
        raise api_error(
            ErrorCode.INVALID_FIELDS, f"per_page is at most {MAX_PER_PAGE}", ["per_page"]
        )
    total, found = await request.app[REPLAY].find(
        actor(request), filters, page=page, per_page=per_page
    )
    directory = await Directory.load(request)
    people = await request.app[DIRECTORY].people(
        [
            f.consultation.assigned_specialist_id
            for f in found
            if f.consultation.assigned_specialist_id
        ]
    )
    return web.json_response(
        {
            "total": total,
            "page": page,
            "per_page": per_page,
            "items": [
                {
                    "consultation_id": f.consultation.id,
                    "state": f.consultation.state,
                    "urgency": f.consultation.urgency,
                    "department": directory.department(f.consultation.department_id),
                    "clinic": directory.institution(f.consultation.requesting_institution_id),
                    "specialist": person_ref(
                        people.get(f.consultation.assigned_specialist_id or "")
                    ),
                    "started_at": iso(f.first_start),
                    "duration_ms": f.longest_ms,
                    "recordings": f.recordings,
                }
                for f in found
            ],
        }
    )


async def replay_json(request: web.Request, consultation_id: str) -> dict[str, Any]:
    """Open a replay (audited, ``NotFound`` as the service says) as the API shows it."""
    return replay_payload(await request.app[REPLAY].open(actor(request), consultation_id))


def replay_payload(replay: Replay) -> dict[str, Any]:
    """An opened replay as the API shows it.

    The replay page's handler uses this too: the page carries its replay, so
    that its players start loading while the HTML is parsed (see ``web.pages``).
    """
    # The names come with the replay (read in its transaction): no query more.
    departments = {replay.department.id: replay.department} if replay.department else {}
    directory = Directory(list(replay.institutions.values()), departments)
    c = replay.consultation

    def offset(at: datetime) -> int:
        return round((at - replay.origin).total_seconds() * 1000)

    return {
        "consultation": {
            "id": c.id,
            "state": c.state,
            "urgency": c.urgency,
            "reason": c.reason,
            "department": directory.department(c.department_id),
            "clinic": directory.institution(c.requesting_institution_id),
            "hospital": directory.institution(c.consulted_institution_id),
        },
        "origin": iso(replay.origin),
        "recordings": [_recording_json(r, replay.people, directory) for r in replay.recordings],
        "events": [
            {
                "id": e.id,
                "at": iso(e.at),
                "offset_ms": offset(e.at),
                "kind": e.kind,
                "actor": person_ref(replay.people.get(e.actor_id or "")),
                "data": e.data,
            }
            for e in replay.events
        ],
    }


async def open_replay(request: web.Request) -> web.StreamResponse:
    """Start a replay: recordings with their offsets, and the timeline (audited)."""
    return web.json_response(await replay_json(request, request.match_info["consultation_id"]))


async def content(request: web.Request) -> web.StreamResponse:
    """The recording file: HTTP Range for seeking; ``?download=1`` saves a copy (audited)."""
    download = request.query.get("download") == "1"
    range_header = request.headers.get("Range", "")
    opening = not range_header or range_header.replace(" ", "").startswith("bytes=0-")
    began = time.perf_counter()
    path, rec = await request.app[REPLAY].file(
        actor(request), request.match_info["recording_id"], download=download, opening=opening
    )
    headers = {
        "Content-Type": MEDIA_TYPES.get(rec.container, "application/octet-stream"),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        # The access check's time (Resource Timing shows it; the replay bench prints it).
        "Server-Timing": (
            f"session;dur={request.get(SESSION_MS, 0.0):.1f}, "
            f"check;dur={(time.perf_counter() - began) * 1000:.1f}"
        ),
    }
    if rec.sha256:
        # So that an archive copy can be verified against the records.
        digest = base64.b64encode(bytes.fromhex(rec.sha256)).decode()
        headers["X-Content-SHA256"] = rec.sha256
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
    # Encrypted at rest or not, the player gets the plaintext with Range support.
    return await stored_file(
        request, path, request.app.get(KEYRING), headers=headers, etag=rec.sha256
    )


def _export_json(job: ExportJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "recording_id": job.recording_id,
        "state": job.state,
        "progress": round(job.progress, 3),
        "watermark": list(job.watermark),
        "url": f"/api/exports/{job.id}",
        "content_url": f"/api/exports/{job.id}/content" if job.state == "done" else None,
    }


async def start_export(request: web.Request) -> web.StreamResponse:
    """Start a copy of a recording with the caller's watermark burned in (audited)."""
    # The server re-encodes only to burn a watermark in; a plain copy is the download.
    if request.query.get("watermark") != "1":
        raise api_error(ErrorCode.INVALID_FIELDS, "exports carry a watermark", ["watermark"])
    job = await request.app[EXPORTS].start(actor(request), request.match_info["recording_id"])
    return web.json_response({"export": _export_json(job)}, status=202)


async def export_status(request: web.Request) -> web.StreamResponse:
    """The state and progress of one's own export."""
    job = await request.app[EXPORTS].status(actor(request), request.match_info["export_id"])
    return web.json_response({"export": _export_json(job)})


async def export_content(request: web.Request) -> web.StreamResponse:
    """The watermarked copy, once done (its download is audited)."""
    path, job = await request.app[EXPORTS].file(actor(request), request.match_info["export_id"])
    headers = {
        "Content-Type": MEDIA_TYPES.get(job.container, "application/octet-stream"),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'attachment; filename="{job.filename}"',
    }
    return web.FileResponse(path, headers=headers)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/recordings",
        search,
        "Find recorded consultations",
        tag="replay",
        query=(
            ("from", DATETIME),
            ("to", DATETIME),
            ("department_id", ID),
            ("clinic_id", ID),
            ("specialist_id", ID),
            ("min_duration_ms", INTEGER),
            ("max_duration_ms", INTEGER),
            ("page", INTEGER),
            ("per_page", {**INTEGER, "maximum": MAX_PER_PAGE}),
        ),
    ),
    Route(
        "GET",
        "/api/consultations/{consultation_id}/replay",
        open_replay,
        "Open a replay (audited)",
        tag="replay",
    ),
    Route(
        "GET",
        "/api/recordings/{recording_id}/content",
        content,
        "Stream (Range) or download a recording",
        tag="replay",
        query=(("download", {"type": "string", "enum": ["1"]}),),
    ),
    Route(
        "POST",
        "/api/recordings/{recording_id}/export",
        start_export,
        "Export a copy with the caller's watermark burned in (?watermark=1; audited)",
        status=202,
        tag="replay",
        query=(("watermark", {"type": "string", "enum": ["1"]}),),
    ),
    Route("GET", "/api/exports/{export_id}", export_status, "Follow an export", tag="replay"),
    Route(
        "GET",
        "/api/exports/{export_id}/content",
        export_content,
        "Download a finished export (audited)",
        tag="replay",
    ),
)
