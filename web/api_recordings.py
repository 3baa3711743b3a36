"""Replay API: find recorded consultations, open a replay, stream or download files."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from records.models import Account, Recording
from records.vocab import ErrorCode
from signaling.workflow.replay import Filters, Replay
from web.api import Directory, iso, person_ref
from web.auth import actor
from web.errors import api_error
from web.keys import DIRECTORY, REPLAY
from web.openapi import DATETIME, ID, INTEGER, MAX_QUERY_INT, Route

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


async def open_replay(request: web.Request) -> web.StreamResponse:
    """Start a replay: recordings with their offsets, and the timeline (audited)."""
    replay: Replay = await request.app[REPLAY].open(
        actor(request), request.match_info["consultation_id"]
    )
    directory = await Directory.load(request)
    c = replay.consultation

    def offset(at: datetime) -> int:
        return round((at - replay.origin).total_seconds() * 1000)

    return web.json_response(
        {
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
    )


async def content(request: web.Request) -> web.StreamResponse:
    """The recording file: HTTP Range for seeking; ``?download=1`` saves a copy (audited)."""
    download = request.query.get("download") == "1"
    range_header = request.headers.get("Range", "")
    opening = not range_header or range_header.replace(" ", "").startswith("bytes=0-")
    path, rec = await request.app[REPLAY].file(
        actor(request), request.match_info["recording_id"], download=download, opening=opening
    )
    headers = {
        "Content-Type": MEDIA_TYPES.get(rec.container, "application/octet-stream"),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if rec.sha256:
        # So that an archive copy can be verified against the records.
        digest = base64.b64encode(bytes.fromhex(rec.sha256)).decode()
        headers["X-Content-SHA256"] = rec.sha256
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
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
)
