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

Before anything parses it, a received file is scanned for malware when a scanner
is configured (``records.scan``): a file it flags is moved to quarantine (never
served), the attempt is audited as ``document.quarantined`` and the uploader gets
``malware_found``; a scanner that cannot answer refuses the upload
(``scan_unavailable``). Parsing then runs in a child process held to the
``Limits`` (``filetypes.analyse_isolated``), and a DICOM file is stored
de-identified: the stored bytes are the cleaned copy, not the upload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from records import documents, filetypes, sealed
from records.documents import Document
from records.files import FileStore, Incoming
from records.limits import Limits
from records.models import Consultation, Patient
from records.scan import ClamdScanner, ScanUnavailable
from records.store import lookups
from records.vocab import ErrorCode, EventKind
from signaling.errors import Invalid, NotFound
from signaling.workflow import policy
from signaling.workflow.base import Actor, Context, Service, Tx, stored

if TYPE_CHECKING:  # pydicom and numpy load when a frame is first decoded, not at start-up
    from records import dicomfile

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


def attachable(tx: Tx, patient: Patient, consultation_id: str) -> Consultation:
    """A consultation of ``patient`` that the actor may see (to attach a document to)."""
    consultation = lookups.consultation(tx.conn, consultation_id)
    if (
        consultation is None
        or consultation.patient_id != patient.id
        or not policy.can_see(tx.account, consultation)
    ):
        raise NotFound(
            "consultation not found",
            fields=("consultation_id",),
            probe=("consultation", consultation_id),
        )
    return consultation


def visible_document(tx: Tx, document_id: str) -> Document:
    """A document the actor may see; otherwise ``NotFound`` (the probe is audited)."""
    # The same statements whether it exists or not (see ``records.store.lookups``).
    document, patient, consultation = lookups.document(tx.conn, document_id)
    if (
        document is not None
        and patient is not None
        and policy.can_see_document(tx.account, patient, consultation)
    ):
        return document
    raise NotFound("document not found", probe=("document", document_id))


class DocumentService(Service):
    """Use cases of a patient's attached records."""

    def __init__(
        self,
        ctx: Context,
        *,
        files: FileStore,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        limits: Limits | None = None,
        scanner: ClamdScanner | None = None,
        keyring: sealed.Keyring | None = None,
    ) -> None:
        """Wire the service.

        Args:
            ctx: the app's database, clock and notifier.
            files: the content-addressed store the contents go to.
            max_upload_bytes: the largest file accepted; reading stops beyond it.
            limits: what parsing one upload may cost (defaults of ``Limits``).
            scanner: the malware scanner (None: uploads are not scanned).
            keyring: the keys of encryption at rest (to decode a DICOM frame).
        """
        super().__init__(ctx)
        self.files = files
        self.max_upload_bytes = max_upload_bytes
        self.limits = limits or Limits()
        self.scanner = scanner
        self.keyring = keyring

    def _too_large(self) -> Invalid:
        return Invalid(
            f"the file is larger than the limit of {self.max_upload_bytes} bytes",
            code=ErrorCode.TOO_LARGE,
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

    async def _scan(
        self, actor: Actor, patient_id: str, consultation_id: str | None, incoming: Incoming
    ) -> None:
        """Refuse (and quarantine) a file the scanner flags; fail closed without a verdict."""
        if self.scanner is None:
            return
        try:
            verdict = await asyncio.to_thread(self.scanner.scan, incoming.path)
        except ScanUnavailable as exc:
            log.error("upload refused: %s", exc.message)
            raise Invalid(
                "the malware scanner is not available; try again later",
                code=ErrorCode.SCAN_UNAVAILABLE,
                fields=("body",),
            ) from exc
        if verdict.clean:
            return
        size = incoming.size
        kept = await asyncio.to_thread(self.files.quarantine, incoming)

        def record(tx: Tx) -> None:
            tx.audit(
                "document.quarantined",
                "patient",
                patient_id,
                consultation_id=consultation_id,
                sha256=kept.name,
                size=size,
                signature=verdict.signature,
            )

        await self.write(actor, record)
        log.warning("upload quarantined sha256=%s signature=%s", kept.name, verdict.signature)
        raise Invalid(
            "the file contains malware; it was not stored and has been reported",
            code=ErrorCode.MALWARE_FOUND,
            fields=("body",),
        )

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
        source: dict[str, Any] | None = None,
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
            source: where the file came from, kept in ``meta["source"]`` (a study
                retrieved from the regional PACS: its UIDs and series).

        Returns:
            The new document.

        Raises:
            NotFound: patient or consultation unknown or not the actor's to use.
            Invalid: ``too_large``, ``unsupported_type``, ``type_mismatch``,
                ``invalid_pdf``, ``invalid_image``, ``invalid_dicom``,
                ``decoded_too_large``, ``malware_found``, ``scan_unavailable``
                or ``invalid_fields``.
        """
        wanted = None
        if declared_type is not None:
            wanted = DECLARED.get(declared_type.strip().lower())
            if wanted is None:
                raise Invalid(
                    "declared_type must be one of pdf, jpeg, png, dicom, text",
                    code=ErrorCode.INVALID_FIELDS,
                    fields=("declared_type",),
                )
        clean_title = filetypes.clean_text(title, MAX_TITLE + 1) if title else ""
        if len(clean_title) > MAX_TITLE:
            raise Invalid(
                f"the title is longer than {MAX_TITLE} characters",
                code=ErrorCode.INVALID_FIELDS,
                fields=("title",),
            )

        # Checked before a byte of the body is read: nobody streams into a
        # patient they may not see. A short write (a refused probe is audited).
        def check(tx: Tx) -> None:
            patient = tx.own_patient(patient_id)
            if consultation_id is not None:
                attachable(tx, patient, consultation_id)

        await self.write(actor, check)
        if declared_size is not None and declared_size > self.max_upload_bytes:
            raise self._too_large()

        # The two temporary files are made, and removed, on the event loop (a
        # mkstemp and an unlink each, no data): with an await between making
        # them and the ``try``, or inside the ``finally``, a handler cancelled
        # there (a server stopping) would leave the upload's file behind, its
        # handle open.
        incoming = self.files.receive()
        try:
            clean = self.files.scratch()
        except BaseException:
            incoming.discard()
            raise
        try:
            await self._receive(chunks, incoming)
            await asyncio.to_thread(incoming.finish)
            await self._scan(actor, patient_id, consultation_id, incoming)
            try:
                found = await asyncio.to_thread(
                    filetypes.analyse_isolated, incoming.path, self.limits, clean_to=clean
                )
            except filetypes.UnreadableContent as exc:
                raise Invalid(exc.message, code=exc.code, fields=("body",)) from exc
            if wanted is not None and wanted != found.kind:
                raise Invalid(
                    f"declared_type says {wanted} but the content is {found.kind}",
                    code=ErrorCode.TYPE_MISMATCH,
                    fields=("declared_type",),
                )
            preview = (
                await asyncio.to_thread(self.files.put_bytes, found.preview_png)
                if found.preview_png is not None
                else None
            )
            if found.kind == "dicom":
                # The de-identified copy is what is kept; the upload is dropped.
                sha256, size = await asyncio.to_thread(self.files.accept_file, clean)
            else:
                size = incoming.size
                sha256 = await asyncio.to_thread(self.files.accept, incoming)
        finally:
            incoming.discard()
            clean.unlink(missing_ok=True)

        name = filetypes.display_name(filename, found.kind)

        def work(tx: Tx) -> Document:
            patient = tx.own_patient(patient_id)
            if consultation_id is not None:
                attachable(tx, patient, consultation_id)
            now = tx.now
            documents.add_blob(
                tx.conn, sha256=sha256, size=size, media_type=found.media_type, at=now
            )
            if preview is not None and found.preview_png is not None:
                documents.add_blob(
                    tx.conn,
                    sha256=preview,
                    size=len(found.preview_png),
                    media_type="image/png",
                    at=now,
                )
            document_id = documents.add_document(
                tx.conn,
                patient_id=patient_id,
                consultation_id=consultation_id,
                sha256=sha256,
                kind=found.kind,
                media_type=found.media_type,
                filename=name,
                title=clean_title or name,
                pages=found.pages,
                meta={**found.meta, "source": source} if source else found.meta,
                preview_sha256=preview,
                uploaded_by=tx.account.id,
                uploaded_at=now,
            )
            if consultation_id is not None:
                tx.event(
                    consultation_id,
                    EventKind.DOCUMENT_SHARED,
                    {"document_id": document_id, "kind": found.kind},
                )
            tx.audit(
                "document.create",
                "document",
                document_id,
                patient_id=patient_id,
                consultation_id=consultation_id,
                kind=found.kind,
                sha256=sha256,
                size=size,
            )
            return stored(documents.get_document(tx.conn, document_id))

        document = await self.write(actor, work)
        log.info("document=%s stored kind=%s size=%d", document.id, found.kind, size)
        return document

    async def list_for_patient(self, actor: Actor, patient_id: str) -> list[Document]:
        """Every document of a patient of the actor's clinic, newest first."""

        def work(tx: Tx) -> list[Document]:
            tx.own_patient(patient_id)
            items = documents.list_documents(tx.conn, patient_id=patient_id)
            tx.audit("document.list", "patient", patient_id, count=len(items))
            return items

        return await self.write(actor, work)

    async def list_for_consultation(self, actor: Actor, consultation_id: str) -> list[Document]:
        """The documents attached to a consultation the actor may see, newest first."""

        def work(tx: Tx) -> list[Document]:
            consultation = tx.consultation(consultation_id)
            items = documents.list_documents(tx.conn, consultation_id=consultation_id)
            tx.audit(
                "document.list",
                "consultation",
                consultation_id,
                patient_id=consultation.patient_id,
                count=len(items),
            )
            return items

        return await self.write(actor, work)

    async def get(self, actor: Actor, document_id: str) -> Document:
        """A document's description (audited as ``document.read``)."""
        return await self._audited_look(actor, document_id, "document.read")

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
        extra: dict[str, Any] = {"range": byte_range[:100]} if byte_range else {}
        document = await self._audited_look(actor, document_id, "document.download", extra)
        return document, self.files.path_for(document.sha256)

    async def preview(self, actor: Actor, document_id: str) -> tuple[Document, Path]:
        """The PNG preview of a DICOM document (audited as ``document.preview``).

        Raises:
            NotFound: unknown, not visible, or without a preview.
        """
        document = await self._audited_look(
            actor, document_id, "document.preview", needs_preview=True
        )
        assert document.preview_sha256 is not None  # noqa: S101 - checked in the look
        return document, self.files.path_for(document.preview_sha256)

    async def frame(self, actor: Actor, document_id: str, index: int) -> dicomfile.Frame:
        """One frame's values of a DICOM document (audited as ``document.frame``).

        The viewer windows them itself, so moving the window costs no request;
        scrolling fetches each frame once.

        Raises:
            NotFound: unknown, not visible, not a DICOM image, or no such frame.
        """
        document = await self._audited_look(
            actor, document_id, "document.frame", {"frame": index}, needs_dicom=True
        )
        path = self.files.path_for(document.sha256)

        def decode() -> dicomfile.Frame:
            from records import dicomfile

            with sealed.open_plain(path, self.keyring) as fh:
                return dicomfile.frame(fh, index)

        try:
            return await asyncio.to_thread(decode)
        except IndexError as exc:
            raise NotFound("no such frame", fields=("index",)) from exc
        # A compressed syntax without its decoder here, or pixels pydicom refuses:
        # the file is still downloadable.
        except Exception as exc:
            log.warning("document=%s frame not decoded: %s", document_id, type(exc).__name__)
            raise NotFound("this image cannot be decoded on the server") from exc

    async def _audited_look(
        self,
        actor: Actor,
        document_id: str,
        action: str,
        extra: dict[str, Any] | None = None,
        *,
        needs_preview: bool = False,
        needs_dicom: bool = False,
    ) -> Document:
        """A visible document, with an audit entry for ``action`` (and ``extra`` facts)."""

        def work(tx: Tx) -> Document:
            document = visible_document(tx, document_id)
            if needs_preview and document.preview_sha256 is None:
                raise NotFound("this document has no preview")
            if needs_dicom and (document.kind != "dicom" or not document.meta.get("has_pixels")):
                raise NotFound("this document has no DICOM image")
            tx.audit(
                action,
                "document",
                document_id,
                patient_id=document.patient_id,
                consultation_id=document.consultation_id,
                **(extra or {}),
            )
            return document

        return await self.write(actor, work)
