"""Storage of documents (a patient's attached records) and of the blobs they point at.

A blob row describes one stored content (``files/<aa>/<bb>/<sha256>``, see
``records.files``); a document row is one upload: who, when, for which patient and
consultation, under which display name. Two uploads of the same bytes are two
documents and one blob. Like ``store.py``, every function runs inside the
caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from records.models import Row
from records.schema import blobs, documents
from records.store import first_row, new_id


@dataclass(frozen=True, kw_only=True)
class Document(Row):
    """A stored document with the size of its content."""

    id: str
    patient_id: str
    consultation_id: str | None
    sha256: str
    size: int
    kind: str
    media_type: str
    filename: str
    title: str
    pages: int | None
    meta: dict[str, Any]
    preview_sha256: str | None
    uploaded_by: str
    uploaded_at: datetime


def add_blob(conn: sa.Connection, *, sha256: str, size: int, media_type: str, at: datetime) -> bool:
    """Record a stored content unless it is recorded already.

    Returns:
        True if this call added the row.
    """
    exists = conn.execute(sa.select(blobs.c.sha256).where(blobs.c.sha256 == sha256))
    if exists.first() is not None:
        return False
    try:
        # A savepoint: losing a race with an identical upload (PostgreSQL) must not
        # spoil the caller's transaction.
        with conn.begin_nested():
            conn.execute(
                blobs.insert().values(sha256=sha256, size=size, media_type=media_type, stored_at=at)
            )
    except IntegrityError:
        return False
    return True


def add_document(
    conn: sa.Connection,
    *,
    patient_id: str,
    consultation_id: str | None,
    sha256: str,
    kind: str,
    media_type: str,
    filename: str,
    title: str,
    pages: int | None,
    meta: dict[str, Any],
    preview_sha256: str | None,
    uploaded_by: str,
    uploaded_at: datetime,
) -> str:
    """Store a document (its blobs must be recorded) and return its id."""
    did = new_id()
    conn.execute(
        documents.insert().values(
            id=did,
            patient_id=patient_id,
            consultation_id=consultation_id,
            sha256=sha256,
            kind=kind,
            media_type=media_type,
            filename=filename,
            title=title,
            pages=pages,
            meta=meta,
            preview_sha256=preview_sha256,
            uploaded_by=uploaded_by,
            uploaded_at=uploaded_at,
        )
    )
    return did


def _select() -> sa.Select[Any]:
    return sa.select(documents, blobs.c.size).join(blobs, blobs.c.sha256 == documents.c.sha256)


def get_document(conn: sa.Connection, document_id: str) -> Document | None:
    """The document, or None."""
    row = first_row(conn, _select().where(documents.c.id == document_id))
    return Document.from_row(row) if row else None


def list_documents(
    conn: sa.Connection,
    *,
    patient_id: str | None = None,
    consultation_id: str | None = None,
) -> list[Document]:
    """Documents of a patient and/or of a consultation, newest first."""
    query = _select()
    if patient_id is not None:
        query = query.where(documents.c.patient_id == patient_id)
    if consultation_id is not None:
        query = query.where(documents.c.consultation_id == consultation_id)
    rows = conn.execute(query.order_by(documents.c.uploaded_at.desc(), documents.c.id))
    return [Document.from_row(r) for r in rows.mappings()]
