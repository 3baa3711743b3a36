"""What an uploaded file is, decided by its content, and what can be read from it.

The type of a document is never taken from its file name or the Content-Type a
client sent: a PDF starts with ``%PDF-``, a JPEG with ``FF D8 FF``, a PNG with its
8-byte signature, a DICOM file has ``DICM`` at offset 128, and anything else is
accepted only as plain text (valid UTF-8 without NUL bytes). Each accepted kind
is then opened by a real parser (pypdf, Pillow, pydicom), so a file that only
starts right is refused as well: a PDF must parse and have at least one page, a
DICOM file must carry a data set.

Every parser is bounded (``records.limits``): sizes a file announces are checked
before anything is decoded, and ``analyse_isolated`` runs the whole analysis in a
child process with a memory and a time limit (``records.sandbox``), so that the
server never holds a decoded file. DICOM files are de-identified on the way in
(``records.dicomfile``). Nothing read from a file is logged.

Everything here is blocking (parsing, image decoding): call it off the event loop.
The parsers are imported where they are used: every process that imports this
module (the server, each command line) would otherwise pay for pypdf, Pillow,
pydicom and numpy at start-up; the sandbox's forkserver imports them once.
"""

from __future__ import annotations

import codecs
import logging
import re
import unicodedata
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from records import sandbox
from records.errors import UnreadableContent
from records.limits import Limits
from records.vocab import ErrorCode

__all__ = ["Analysis", "Limits", "UnreadableContent", "analyse", "analyse_isolated", "sniff"]

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    "pdf": "application/pdf",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "dicom": "application/dicom",
    "text": "text/plain",
}
EXTENSIONS = {"pdf": ".pdf", "jpeg": ".jpg", "png": ".png", "dicom": ".dcm", "text": ".txt"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bytes needed to tell the binary kinds apart (DICOM's marker ends at 132).
HEAD_BYTES = 132
MAX_FILENAME = 120
# Characters that cannot be in a file name on Windows, where users save downloads.
UNSAFE_NAME_CHARS = re.compile(r'[<>:"/\\|?*]')


@dataclass(frozen=True, kw_only=True)
class Analysis:
    """What was found in a file."""

    kind: str
    media_type: str
    pages: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    preview_png: bytes | None = None


def sniff(head: bytes) -> str | None:
    """The binary kind that ``head`` (the first bytes of a file) announces, or None."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if len(head) >= HEAD_BYTES and head[128:132] == b"DICM":
        return "dicom"
    return None


def analyse(
    path: Path,
    limits: Limits | None = None,
    *,
    clean_to: Path | None = None,
    preview: bool = True,
) -> Analysis:
    """Decide the kind of the file at ``path`` and read what it can tell.

    This runs in the calling process; the server uses ``analyse_isolated``.

    Args:
        path: the uploaded file.
        limits: what reading it may cost (the defaults of ``Limits``).
        clean_to: for a DICOM file, where to write its de-identified copy.
        preview: whether to render a DICOM file's preview.

    Raises:
        UnreadableContent: with code ``unsupported_type`` (none of the kinds),
            ``invalid_pdf``, ``invalid_image``, ``invalid_dicom`` (the parser
            refuses it) or ``decoded_too_large`` (over ``limits``).
    """
    limits = limits or Limits()
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    if not head:
        raise UnreadableContent("the file is empty", code=ErrorCode.UNSUPPORTED_TYPE)
    kind = sniff(head)
    if kind == "pdf":
        return Analysis(kind=kind, media_type=MEDIA_TYPES[kind], pages=_pdf_pages(path, limits))
    if kind in ("jpeg", "png"):
        return _image(path, kind, limits)
    if kind == "dicom":
        found = _dicom(path, limits, clean_to)
        if preview and found.meta["has_pixels"]:
            found = _with_preview(found, clean_to or path)
        return found
    lines = _text_lines(path)
    if lines is None:
        raise UnreadableContent(
            "only PDF, JPEG, PNG, DICOM and plain UTF-8 text files are accepted",
            code=ErrorCode.UNSUPPORTED_TYPE,
        )
    return Analysis(kind="text", media_type=MEDIA_TYPES["text"], meta={"lines": lines})


def _in_child(send: sandbox.Send, path: Path, limits: Limits, clean_to: Path | None) -> None:
    """The parsing child: the analysis first, then (for DICOM) the preview apart,
    so that a preview that dies at the memory limit loses only itself."""
    try:
        found = analyse(path, limits, clean_to=clean_to, preview=False)
    except UnreadableContent as exc:
        send(("refused", (exc.message, exc.code.value)))
        return
    send(("analysis", found))
    if found.kind == "dicom" and found.meta["has_pixels"]:
        send(("preview", _with_preview(found, clean_to or path)))


def analyse_isolated(path: Path, limits: Limits, *, clean_to: Path | None = None) -> Analysis:
    """``analyse`` in a child process held to ``limits.memory_bytes`` and ``limits.timeout``.

    A DICOM file whose preview fails (or is killed at a limit) is still
    accepted, without a preview and with ``meta["preview_error"]`` saying why.

    Raises:
        UnreadableContent: as ``analyse``; ``decoded_too_large`` also when the
            child ran out of memory or time before it could tell.
    """
    outcome = sandbox.run_limited(
        _in_child, path, limits, clean_to, memory_bytes=limits.memory_bytes, timeout=limits.timeout
    )
    found: Analysis | None = None
    for tag, value in outcome.messages:
        if tag == "refused":
            message, code = value
            raise UnreadableContent(message, code=ErrorCode(code))
        if tag == "analysis":
            found = value
        elif tag == "preview" and found is not None:
            found = value
    if found is None:
        log.warning("a file was refused: its analysis ended with %s", outcome.failure)
        raise UnreadableContent(
            "reading this file needs more memory or time than the server allows",
            code=ErrorCode.DECODED_TOO_LARGE,
        )
    if outcome.failure is not None and found.kind == "dicom" and found.meta["has_pixels"]:
        if not found.meta["preview"]:
            log.warning("no preview for a DICOM file: the child ended with %s", outcome.failure)
            found = replace(found, meta={**found.meta, "preview_error": outcome.failure})
    return found


def _pdf_pages(path: Path, limits: Limits) -> int:
    """The page count of a PDF that pypdf can read; refuse one it cannot, or without pages.

    pypdf bounds what its own filters may inflate (75 MB a stream by default).
    """
    import pypdf

    try:
        reader = pypdf.PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableContent(
                "a password-protected PDF cannot be shared", code=ErrorCode.INVALID_PDF
            )
        pages = len(reader.pages)
    except UnreadableContent:
        raise
    # A parser of untrusted bytes: whatever it raises means "not a PDF we can read".
    except Exception as exc:
        raise UnreadableContent("pypdf cannot read this PDF", code=ErrorCode.INVALID_PDF) from exc
    if pages < 1:
        raise UnreadableContent("the PDF has no pages", code=ErrorCode.INVALID_PDF)
    if pages > limits.max_pdf_pages:
        raise UnreadableContent(
            f"the PDF has more than {limits.max_pdf_pages} pages",
            code=ErrorCode.DECODED_TOO_LARGE,
        )
    return pages


def _text_lines(path: Path) -> int | None:
    """Number of lines if the whole file is UTF-8 without NUL bytes, else None."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    lines = 0
    last = b""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            if b"\x00" in chunk:
                return None
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return None
            lines += chunk.count(b"\n")
            last = chunk
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    return lines + (0 if last.endswith(b"\n") else 1)


def _image(path: Path, kind: str, limits: Limits) -> Analysis:
    from PIL import Image

    expected = {"jpeg": "JPEG", "png": "PNG"}[kind]
    too_large = UnreadableContent(
        f"the picture has more than {limits.max_pixels} pixels",
        code=ErrorCode.DECODED_TOO_LARGE,
    )
    try:
        # Pillow's own bomb check warns past MAX_IMAGE_PIXELS: refuse instead.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format != expected:
                    raise UnreadableContent(
                        f"not a valid {expected} image", code=ErrorCode.INVALID_IMAGE
                    )
                width, height, mode = img.width, img.height, img.mode
                # Checked before anything would decode the pixels.
                if width * height > limits.max_pixels:
                    raise too_large
                img.verify()
    except UnreadableContent:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise too_large from exc
    # Untrusted bytes reach a C decoder here: whatever it raises (OSError,
    # SyntaxError from verify()...) means "refuse".
    except Exception as exc:
        raise UnreadableContent(
            f"Pillow cannot read this {expected} image", code=ErrorCode.INVALID_IMAGE
        ) from exc
    meta = {"width": width, "height": height, "mode": mode}
    return Analysis(kind=kind, media_type=MEDIA_TYPES[kind], meta=meta)


def _dicom(path: Path, limits: Limits, clean_to: Path | None) -> Analysis:
    from records import dicomfile

    meta = dicomfile.read(path, limits, clean_to)
    return Analysis(kind="dicom", media_type=MEDIA_TYPES["dicom"], meta=meta)


def _with_preview(found: Analysis, path: Path) -> Analysis:
    """``found`` with the preview of the DICOM file at ``path``, or why there is none."""
    from records import dicomfile

    try:
        png = dicomfile.preview(path, int(found.meta["frames"]))
    # Compressed transfer syntaxes need decoders that may not be installed, and
    # a frame may not fit the memory limit; the file is still stored and
    # downloadable, only without a preview.
    except Exception as exc:
        log.warning("no preview for a DICOM file: %s", type(exc).__name__)
        return replace(found, meta={**found.meta, "preview_error": type(exc).__name__})
    return replace(found, meta={**found.meta, "preview": True}, preview_png=png)


def display_name(raw: str | None, kind: str) -> str:
    """A file name that is safe to show and to offer for saving.

    Directories (``/`` or ``\\``), ``..``, control and invisible formatting
    characters (including right-to-left overrides) and characters Windows forbids
    are removed, and the name is shortened to ``MAX_FILENAME`` characters keeping
    its extension. The name is only ever displayed: files are stored by hash.
    """
    fallback = "document" + EXTENSIONS[kind]
    if not raw:
        return fallback
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C"))
    name = UNSAFE_NAME_CHARS.sub("_", name).strip(" .")
    if not name:
        return fallback
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: MAX_FILENAME - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            name = name[:MAX_FILENAME]
    return name


def clean_text(raw: str, limit: int) -> str:
    """One line of display text: no control characters, spaces collapsed, cut to ``limit``."""
    text = "".join(
        " " if unicodedata.category(ch).startswith("C") else ch
        for ch in unicodedata.normalize("NFC", raw)
    )
    return " ".join(text.split())[:limit]
