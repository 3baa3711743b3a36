"""Documents API: upload a patient's records, list, describe, download, preview.

The upload body is the raw file (not multipart, not JSON), streamed to disk; the
original name comes from the ``filename`` query parameter or a
``Content-Disposition`` header and is only displayed. Downloads are served from
the content-addressed store with Range support, as the type the content was
recognized as, never sniffed by the browser.
"""

from __future__ import annotations

from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import hdrs, web

from records.documents import Document
from records.models import Account
from signaling.workflow.documents import DECLARED, DocumentService
from web.auth import actor
from web.keys import DIRECTORY, DOCUMENTS, KEYRING
from web.openapi import ID, STRING, Route
from web.payloads import iso, person_ref
from web.ranged import stored_file

CHUNK = 64 * 1024


def document_json(document: Document, people: dict[str, Account]) -> dict[str, Any]:
    """A document's description (the bytes are at ``content_url``)."""
    base = f"/api/documents/{document.id}"
    return {
        "id": document.id,
        "patient_id": document.patient_id,
        "consultation_id": document.consultation_id,
        "kind": document.kind,
        "media_type": document.media_type,
        "filename": document.filename,
        "title": document.title,
        "size": document.size,
        "sha256": document.sha256,
        "pages": document.pages,
        "meta": document.meta,
        "has_preview": document.preview_sha256 is not None,
        "uploaded_by": person_ref(people.get(document.uploaded_by)),
        "uploaded_at": iso(document.uploaded_at),
        "content_url": base + "/content",
        "preview_url": base + "/preview" if document.preview_sha256 else None,
    }


async def _json_list(request: web.Request, items: list[Document]) -> dict[str, Any]:
    people = await request.app[DIRECTORY].people([d.uploaded_by for d in items])
    return {"documents": [document_json(d, people) for d in items]}


def _service(request: web.Request) -> DocumentService:
    return request.app[DOCUMENTS]


def _original_name(request: web.Request) -> str | None:
    name = request.query.get("filename")
    if name:
        return name
    header = request.headers.get(hdrs.CONTENT_DISPOSITION)
    if not header:
        return None
    # The email package parses RFC 2231/6266 parameters (``filename*=UTF-8''...``)
    # leniently; aiohttp's parser refuses a ``/`` in the value, which is exactly
    # what the name is sanitized for later.
    message = Message()
    message[hdrs.CONTENT_DISPOSITION] = header
    name = message.get_filename()
    return name if isinstance(name, str) else None


async def upload_document(request: web.Request) -> web.StreamResponse:
    """Upload a file (the raw body) as a document of the patient."""
    query = request.query
    document = await _service(request).upload(
        actor(request),
        request.match_info["patient_id"],
        request.content.iter_chunked(CHUNK),
        filename=_original_name(request),
        title=query.get("title"),
        consultation_id=query.get("consultation_id") or None,
        declared_type=query.get("declared_type") or None,
        declared_size=request.content_length,
    )
    people = await request.app[DIRECTORY].people([document.uploaded_by])
    return web.json_response({"document": document_json(document, people)}, status=201)


async def patient_documents(request: web.Request) -> web.StreamResponse:
    """Every document of a patient of the clinic."""
    items = await _service(request).list_for_patient(
        actor(request), request.match_info["patient_id"]
    )
    return web.json_response(await _json_list(request, items))


async def consultation_documents(request: web.Request) -> web.StreamResponse:
    """The documents attached to a consultation."""
    items = await _service(request).list_for_consultation(
        actor(request), request.match_info["consultation_id"]
    )
    return web.json_response(await _json_list(request, items))


async def get_document(request: web.Request) -> web.StreamResponse:
    """A document's description."""
    document = await _service(request).get(actor(request), request.match_info["document_id"])
    people = await request.app[DIRECTORY].people([document.uploaded_by])
    return web.json_response({"document": document_json(document, people)})


async def _file_response(
    request: web.Request, path: Path, media_type: str, filename: str, sha256: str | None
) -> web.StreamResponse:
    content_type = media_type + ("; charset=utf-8" if media_type.startswith("text/") else "")
    # Encrypted at rest or not, the plaintext goes out with Range support.
    return await stored_file(
        request,
        path,
        request.app.get(KEYRING),
        etag=sha256,
        headers={
            hdrs.CONTENT_TYPE: content_type,
            hdrs.CONTENT_DISPOSITION: "inline; filename*=UTF-8''" + quote(filename, safe=""),
            # The type was decided from the content; the browser must not guess again.
            "X-Content-Type-Options": "nosniff",
            # Patient data: no shared cache, no copy left on the clinic PC's disk.
            hdrs.CACHE_CONTROL: "private, no-store",
        },
    )


async def document_content(request: web.Request) -> web.StreamResponse:
    """The document's bytes (Range requests supported)."""
    document, path = await _service(request).content(
        actor(request),
        request.match_info["document_id"],
        byte_range=request.headers.get(hdrs.RANGE),
    )
    return await _file_response(
        request, path, document.media_type, document.filename, document.sha256
    )


async def document_preview(request: web.Request) -> web.StreamResponse:
    """The PNG preview of a DICOM document."""
    document, path = await _service(request).preview(
        actor(request), request.match_info["document_id"]
    )
    stem = document.filename.rsplit(".", 1)[0] or "preview"
    return await _file_response(request, path, "image/png", stem + ".png", document.preview_sha256)


D = "/api/documents/{document_id}"
ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/patients/{patient_id}/documents",
        upload_document,
        "Upload a document (the raw file as the body)",
        status=201,
        tag="documents",
        query=(
            ("filename", STRING),
            ("title", STRING),
            ("consultation_id", ID),
            ("declared_type", {"type": "string", "enum": sorted(DECLARED)}),
        ),
        raw_body=("application/octet-stream", {"type": "string", "format": "binary"}),
    ),
    Route(
        "GET",
        "/api/patients/{patient_id}/documents",
        patient_documents,
        "A patient's documents",
        tag="documents",
    ),
    Route(
        "GET",
        "/api/consultations/{consultation_id}/documents",
        consultation_documents,
        "Documents attached to a consultation",
        tag="documents",
    ),
    Route("GET", D, get_document, "A document", tag="documents"),
    Route("GET", D + "/content", document_content, "A document's content", tag="documents"),
    Route("GET", D + "/preview", document_preview, "A DICOM document's preview", tag="documents"),
)
