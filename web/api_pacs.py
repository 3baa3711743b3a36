"""Regional PACS API: the consultation patient's studies, attach one; DICOM frames.

The search takes no query from the client: the server searches by the
consultation patient's own identifiers (``signaling/workflow/pacs.py``). A frame
is sent as its raw values (``application/octet-stream``) with its description
in the ``X-Frame`` header, so the viewer windows it without another request.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import hdrs, web

from records.dicomweb import Study
from records.vocab import ErrorCode
from web import schemas
from web.api_documents import document_json
from web.auth import actor
from web.errors import api_error
from web.keys import DIRECTORY, DOCUMENTS, PACS
from web.openapi import INTEGER, Route
from web.payloads import body


def study_json(study: Study, matched_by: str) -> dict[str, Any]:
    """A study as the search lists it (no patient identity; how it was matched)."""
    return {
        "matched_by": matched_by,
        "study_uid": study.study_uid,
        "date": study.date,
        "modalities": list(study.modalities),
        "description": study.description,
        "series": study.series,
        "instances": study.instances,
    }


async def pacs_studies(request: web.Request) -> web.StreamResponse:
    """The consultation patient's studies on the regional PACS."""
    studies = await request.app[PACS].search(actor(request), request.match_info["consultation_id"])
    return web.json_response({"studies": [study_json(s, how) for s, how in studies]})


async def pacs_attach(request: web.Request) -> web.StreamResponse:
    """Retrieve a study from the PACS and attach it to the consultation."""
    data = await body(request, schemas.PacsAttachIn)
    stored = await request.app[PACS].attach(
        actor(request), request.match_info["consultation_id"], data.study_uid
    )
    people = await request.app[DIRECTORY].people([d.uploaded_by for d in stored])
    return web.json_response({"documents": [document_json(d, people) for d in stored]}, status=201)


async def document_frame(request: web.Request) -> web.StreamResponse:
    """One frame of a DICOM document: raw values, described in ``X-Frame``."""
    raw = request.query.get("index", "0")
    if not raw.isdigit() or len(raw) > 9:
        raise api_error(ErrorCode.INVALID_FIELDS, "index must be a frame number", ("index",))
    frame = await request.app[DOCUMENTS].frame(
        actor(request), request.match_info["document_id"], int(raw)
    )
    described = {
        "index": frame.index,
        "frames": frame.frames,
        "rows": frame.rows,
        "columns": frame.columns,
        "samples": frame.samples,
        "photometric": frame.photometric,
        "center": frame.center,
        "width": frame.width,
        "low": frame.low,
        "high": frame.high,
    }
    return web.Response(
        body=frame.data,
        headers={
            hdrs.CONTENT_TYPE: "application/octet-stream",
            "X-Frame": json.dumps(described),
            "X-Content-Type-Options": "nosniff",
            # Patient data: no shared cache, no copy left on the clinic PC's disk.
            hdrs.CACHE_CONTROL: "private, no-store",
        },
    )


C = "/api/consultations/{consultation_id}"
ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        C + "/pacs/studies",
        pacs_studies,
        "The patient's studies on the regional PACS",
        tag="documents",
    ),
    Route(
        "POST",
        C + "/pacs/attach",
        pacs_attach,
        "Attach a study of the regional PACS (retrieved and stored)",
        schemas.PacsAttachIn,
        201,
        tag="documents",
    ),
    Route(
        "GET",
        "/api/documents/{document_id}/frame",
        document_frame,
        "One frame of a DICOM document (float32 or RGB values)",
        tag="documents",
        query=(("index", INTEGER),),
    ),
)
