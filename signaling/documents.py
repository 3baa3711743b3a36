"""Documents shared in a consultation: upload, list, read, download, preview.

A clinic doctor uploads a patient's records (PDF, JPEG, PNG, DICOM, UTF-8 text),
optionally attached to one of the patient's consultations. The patient's clinic
sees every document of the patient; the specialists, coordinators and invitees of
a consultation see the documents attached to it (``policy.can_see_document``).
Anything else is answered exactly like an unknown id, and the attempt is audited.

An upload is streamed: the body is read chunk by chunk into a temporary file,
hashed on the way, and reading stops as soon as it passes ``max_upload_bytes``.
No database transaction is open while the bytes arrive (SQLite has one writer);
access is checked before the first byte is read and again when the document row
is written. The content is stored before its row is committed: a failure in
between leaves an unreferenced file in the content-addressed store, never a row
without its file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from records import documents, filetypes, store
from records.clock import Clock
from records.db import Database
from records.documents import Document
from records.files import FileStore, Incoming
from records.models import Consultation, Patient
from signaling import policy
from signaling.access import Actor, Audited
from signaling.errors import Invalid, NotFound

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# Received chunks are collected up to this size before one write off the loop.
WRITE_BUFFER = 1024 * 1024
MAX_TITLE = 200
# ``declared_type`` may name a kind or its media type.
DECLARED = {
    **{kind: kind for kind in filetypes.MEDIA_TYPES},
    **{media: kind for kind, media in filetypes.MEDIA_TYPES.items()},
    "jpg": "jpeg",
    "image/jpg": "jpeg",
    "dcm": "dicom",
    "txt": "text",
}


class DocumentService:
    """Use cases of a patient's attached records."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        files: FileStore,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    ) -> None:
        """Wire the service.

        Args:
            db: the system of record.
            clock: the source of time.
            files: the content-addressed store the contents go to.
            max_upload_bytes: the largest file accepted; reading stops beyond it.
        """
        self.db = db
        self.clock = clock
        self._audited = Audited(db, clock)
        self.files = files
        self.max_upload_bytes = max_upload_bytes

    # -- helpers --------------------------------------------------------------------

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: Actor,
        action: str,
        object_type: str,
        object_id: str | None,
        **detail: Any,
    ) -> None:
        await self._audited.audit(conn, actor, action, object_type, object_id, **detail)

    def _tx(
        self, actor: Actor, *, write: bool = True
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction on behalf of ``actor``; refused probes are audited (see access.py)."""
        return self._audited.tx(actor, write=write)

    async def _own_patient(self, conn: AsyncConnection, actor: Actor, patient_id: str) -> Patient:
        patient = await store.get_patient(conn, patient_id)
        if (
            patient is None
            or not actor.account.active
            or actor.role != "clinic_doctor"
            or patient.institution_id != actor.account.institution_id
        ):
            raise NotFound(
                "patient not found", fields=("patient_id",), probe=("patient", patient_id)
            )
        return patient

    async def _attachable(
        self, conn: AsyncConnection, actor: Actor, patient: Patient, consultation_id: str
    ) -> Consultation:
        consultation = await store.get_consultation(conn, consultation_id)
        if (
            consultation is None
            or consultation.patient_id != patient.id
            or not policy.can_see(actor.account, consultation)
        ):
            raise NotFound(
                "consultation not found",
                fields=("consultation_id",),
                probe=("consultation", consultation_id),
            )
        return consultation

    async def _visible(self, conn: AsyncConnection, actor: Actor, document_id: str) -> Document:
        document = await documents.get_document(conn, document_id)
        if document is not None:
            patient = await store.get_patient(conn, document.patient_id)
            consultation = (
                await store.get_consultation(conn, document.consultation_id)
                if document.consultation_id
                else None
            )
            if patient is not None and policy.can_see_document(
                actor.account, patient, consultation
            ):
                return document
        # The same answer as for an id that does not exist; ``_tx`` records who
        # asked for which id.
        raise NotFound("document not found", probe=("document", document_id))

    def _too_large(self) -> Invalid:
        return Invalid(
            f"the file is larger than the limit of {self.max_upload_bytes} bytes",
            code="too_large",
            fields=("body",),
        )

    async def _receive(self, chunks: AsyncIterable[bytes], incoming: Incoming) -> None:
        """Write the chunks to ``incoming``; stop reading at once past the limit."""
        received = 0
        buffer = bytearray()
        async for chunk in chunks:
            received += len(chunk)
            if received > self.max_upload_bytes:
                raise self._too_large()
            buffer += chunk
            if len(buffer) >= WRITE_BUFFER:
                await asyncio.to_thread(incoming.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await asyncio.to_thread(incoming.write, bytes(buffer))

    # -- use cases ------------------------------------------------------------------

    async def upload(
        self,
        actor: Actor,
        patient_id: str,
        chunks: AsyncIterable[bytes],
        *,
        filename: str | None = None,
        title: str | None = None,
        consultation_id: str | None = None,
        declared_type: str | None = None,
        declared_size: int | None = None,
    ) -> Document:
        """Store a file as a document of the patient (and of one of their consultations).

        Args:
            actor: a doctor of the patient's clinic.
            patient_id: the patient.
            chunks: the file's bytes as they arrive.
            filename: the name the file had on the client (only displayed).
            title: what to show for it; defaults to the file name.
            consultation_id: a consultation of the patient to attach it to.
            declared_type: the kind the client says it sends; must match the content.
            declared_size: the announced length, refused early if over the limit.

        Returns:
            The new document.

        Raises:
            NotFound: patient or consultation unknown or not the actor's to use.
            Invalid: ``too_large``, ``unsupported_type``, ``type_mismatch``,
                ``invalid_image``, ``invalid_dicom`` or ``invalid_fields``.
        """
        wanted = None
        if declared_type is not None:
            wanted = DECLARED.get(declared_type.strip().lower())
            if wanted is None:
                raise Invalid(
                    "declared_type must be one of pdf, jpeg, png, dicom, text",
                    code="invalid_fields",
                    fields=("declared_type",),
                )
        clean_title = filetypes.clean_text(title, MAX_TITLE + 1) if title else ""
        if len(clean_title) > MAX_TITLE:
            raise Invalid(
                f"the title is longer than {MAX_TITLE} characters",
                code="invalid_fields",
                fields=("title",),
            )
        # Checked before a byte of the body is read: nobody streams into a
        # patient they may not see. Read-only, so no write lock is held.
        async with self._tx(actor, write=False) as conn:
            patient = await self._own_patient(conn, actor, patient_id)
            if consultation_id is not None:
                await self._attachable(conn, actor, patient, consultation_id)
        if declared_size is not None and declared_size > self.max_upload_bytes:
            raise self._too_large()

        incoming = await asyncio.to_thread(self.files.receive)
        try:
            await self._receive(chunks, incoming)
            await asyncio.to_thread(incoming.finish)
            try:
                found = await asyncio.to_thread(filetypes.analyse, incoming.path)
            except filetypes.UnreadableContent as exc:
                raise Invalid(exc.message, code=exc.code, fields=("body",)) from exc
            if wanted is not None and wanted != found.kind:
                raise Invalid(
                    f"declared_type says {wanted} but the content is {found.kind}",
                    code="type_mismatch",
                    fields=("declared_type",),
                )
            size = incoming.size
            preview = (
                await asyncio.to_thread(self.files.put_bytes, found.preview_png)
                if found.preview_png is not None
                else None
            )
            sha256 = await asyncio.to_thread(self.files.accept, incoming)
        finally:
            await asyncio.to_thread(incoming.discard)

        name = filetypes.display_name(filename, found.kind)
        now = self.clock.now()
        async with self._tx(actor) as conn:
            patient = await self._own_patient(conn, actor, patient_id)
            if consultation_id is not None:
                await self._attachable(conn, actor, patient, consultation_id)
            await documents.add_blob(
                conn, sha256=sha256, size=size, media_type=found.media_type, at=now
            )
            if preview is not None and found.preview_png is not None:
                await documents.add_blob(
                    conn,
                    sha256=preview,
                    size=len(found.preview_png),
                    media_type="image/png",
                    at=now,
                )
            document_id = await documents.add_document(
                conn,
                patient_id=patient_id,
                consultation_id=consultation_id,
                sha256=sha256,
                kind=found.kind,
                media_type=found.media_type,
                filename=name,
                title=clean_title or name,
                pages=found.pages,
                meta=found.meta,
                preview_sha256=preview,
                uploaded_by=actor.id,
                uploaded_at=now,
            )
            if consultation_id is not None:
                await store.add_event(
                    conn,
                    consultation_id=consultation_id,
                    at=now,
                    kind="document_shared",
                    actor_id=actor.id,
                    data={"document_id": document_id, "kind": found.kind},
                )
            await self._audit(
                conn,
                actor,
                "document.create",
                "document",
                document_id,
                patient_id=patient_id,
                consultation_id=consultation_id,
                kind=found.kind,
                sha256=sha256,
                size=size,
            )
            document = await documents.get_document(conn, document_id)
        assert document is not None  # noqa: S101 - written in this transaction
        log.info("document=%s stored kind=%s size=%d", document_id, found.kind, size)
        return document

    async def list_for_patient(self, actor: Actor, patient_id: str) -> list[Document]:
        """Every document of a patient of the actor's clinic, newest first."""
        async with self._tx(actor) as conn:
            await self._own_patient(conn, actor, patient_id)
            items = await documents.list_documents(conn, patient_id=patient_id)
            await self._audit(conn, actor, "document.list", "patient", patient_id, count=len(items))
        return items

    async def list_for_consultation(self, actor: Actor, consultation_id: str) -> list[Document]:
        """The documents attached to a consultation the actor may see, newest first."""
        async with self._tx(actor) as conn:
            consultation = await store.get_consultation(conn, consultation_id)
            if consultation is None or not policy.can_see(actor.account, consultation):
                raise NotFound("consultation not found", probe=("consultation", consultation_id))
            items = await documents.list_documents(conn, consultation_id=consultation_id)
            await self._audit(
                conn,
                actor,
                "document.list",
                "consultation",
                consultation_id,
                patient_id=consultation.patient_id,
                count=len(items),
            )
        return items

    async def get(self, actor: Actor, document_id: str) -> Document:
        """A document's description (audited as ``document.read``)."""
        async with self._tx(actor) as conn:
            document = await self._visible(conn, actor, document_id)
            await self._audit(
                conn,
                actor,
                "document.read",
                "document",
                document_id,
                patient_id=document.patient_id,
                consultation_id=document.consultation_id,
            )
        return document

    async def content(
        self, actor: Actor, document_id: str, *, byte_range: str | None = None
    ) -> tuple[Document, Path]:
        """A document and the path of its bytes (audited as ``document.download``).

        Args:
            actor: who downloads.
            document_id: the document.
            byte_range: the HTTP ``Range`` asked for, kept in the audit entry
                (a PDF viewer fetches a large file in parts).
        """
        async with self._tx(actor) as conn:
            document = await self._visible(conn, actor, document_id)
            detail: dict[str, Any] = {
                "patient_id": document.patient_id,
                "consultation_id": document.consultation_id,
            }
            if byte_range:
                detail["range"] = byte_range[:100]
            await self._audit(conn, actor, "document.download", "document", document_id, **detail)
        return document, self.files.path_for(document.sha256)

    async def preview(self, actor: Actor, document_id: str) -> tuple[Document, Path]:
        """The PNG preview of a DICOM document (audited as ``document.preview``).

        Raises:
            NotFound: unknown, not visible, or without a preview.
        """
        async with self._tx(actor) as conn:
            document = await self._visible(conn, actor, document_id)
            if document.preview_sha256 is None:
                raise NotFound("this document has no preview")
            await self._audit(
                conn,
                actor,
                "document.preview",
                "document",
                document_id,
                patient_id=document.patient_id,
                consultation_id=document.consultation_id,
            )
        return document, self.files.path_for(document.preview_sha256)
