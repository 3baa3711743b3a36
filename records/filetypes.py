"""What an uploaded file is, decided by its content, and what can be read from it.

The type of a document is never taken from its file name or the Content-Type a
client sent: a PDF starts with ``%PDF-``, a JPEG with ``FF D8 FF``, a PNG with its
8-byte signature, a DICOM file has ``DICM`` at offset 128, and anything else is
accepted only as plain text (valid UTF-8 without NUL bytes). Each accepted kind
is then opened by a real parser (Pillow, pydicom), so a file that only starts
right is refused as well.

DICOM headers carry the patient's name, ID and birth date. Only technical tags
(modality, study date, body part, image size, frames) are kept in ``meta``, and
nothing read from a file is logged.

Everything here is blocking (parsing, image decoding): call it off the event loop.
"""

from __future__ import annotations

import codecs
import io
import logging
import mmap
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.config
from PIL import Image
from pydicom.multival import MultiValue
from pydicom.pixels.utils import pixel_array

from records.errors import RecordsError
from records.vocab import ErrorCode

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
# The longest side of a DICOM preview, in pixels.
PREVIEW_MAX_SIDE = 1024
# A page object of a PDF; counting them is an estimate (objects of deleted pages
# may remain in a file), good enough to show "12 pages" and cheap (no parser).
PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
MAX_FILENAME = 120
# Characters that cannot be in a file name on Windows, where users save downloads.
UNSAFE_NAME_CHARS = re.compile(r'[<>:"/\\|?*]')
PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class UnreadableContent(RecordsError):
    """The content is not a supported kind, or its parser refuses it."""

    def __init__(self, message: str, *, code: ErrorCode) -> None:
        super().__init__(message, fields=("body",))
        self.code = code


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


def analyse(path: Path) -> Analysis:
    """Decide the kind of the file at ``path`` and read what it can tell.

    Raises:
        UnreadableContent: with code ``unsupported_type`` (none of the kinds),
            ``invalid_image`` (a JPEG or PNG Pillow cannot open) or
            ``invalid_dicom`` (``DICM`` but pydicom cannot read the header).
    """
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    if not head:
        raise UnreadableContent("the file is empty", code=ErrorCode.UNSUPPORTED_TYPE)
    kind = sniff(head)
    if kind == "pdf":
        return Analysis(kind=kind, media_type=MEDIA_TYPES[kind], pages=_pdf_pages(path))
    if kind in ("jpeg", "png"):
        return _image(path, kind)
    if kind == "dicom":
        return _dicom(path)
    lines = _text_lines(path)
    if lines is None:
        raise UnreadableContent(
            "only PDF, JPEG, PNG, DICOM and plain UTF-8 text files are accepted",
            code=ErrorCode.UNSUPPORTED_TYPE,
        )
    return Analysis(kind="text", media_type=MEDIA_TYPES["text"], meta={"lines": lines})


def _pdf_pages(path: Path) -> int | None:
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        count = sum(1 for _ in PDF_PAGE.finditer(data))
    return count or None


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


def _image(path: Path, kind: str) -> Analysis:
    expected = {"jpeg": "JPEG", "png": "PNG"}[kind]
    try:
        with Image.open(path) as img:
            if img.format != expected:
                raise UnreadableContent(
                    f"not a valid {expected} image", code=ErrorCode.INVALID_IMAGE
                )
            width, height, mode = img.width, img.height, img.mode
            img.verify()
    except UnreadableContent:
        raise
    # Untrusted bytes reach a C decoder here: whatever it raises (OSError,
    # SyntaxError from verify(), DecompressionBombError...) means "refuse".
    except Exception as exc:
        raise UnreadableContent(
            f"Pillow cannot read this {expected} image", code=ErrorCode.INVALID_IMAGE
        ) from exc
    meta = {"width": width, "height": height, "mode": mode}
    return Analysis(kind=kind, media_type=MEDIA_TYPES[kind], meta=meta)


def _text_tag(ds: pydicom.Dataset, keyword: str, limit: int = 64) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    text = str(value).strip()
    return text[:limit] or None


def _iso_date(value: str | None) -> str | None:
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _first_number(value: Any) -> float | None:
    """A number from a DICOM value that may hold several (WindowCenter often does)."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _dicom(path: Path) -> Analysis:
    # Invalid values are ignored rather than reported: pydicom's warnings quote
    # the offending value, which may be the patient's name.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        # Large values (the pixels) are not loaded here, only noted.
        ds = pydicom.dcmread(path, defer_size="64 KB")
    # A parser of untrusted bytes: any failure means the header is unreadable.
    except Exception as exc:
        raise UnreadableContent(
            "pydicom cannot read this DICOM file", code=ErrorCode.INVALID_DICOM
        ) from exc
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        frames = 1
    has_pixels = any(tag in ds for tag in PIXEL_TAGS)
    meta: dict[str, Any] = {
        "modality": _text_tag(ds, "Modality", 16),
        "study_date": _iso_date(_text_tag(ds, "StudyDate", 16)),
        "body_part": _text_tag(ds, "BodyPartExamined"),
        "rows": int(ds.Rows) if "Rows" in ds else None,
        "columns": int(ds.Columns) if "Columns" in ds else None,
        "frames": frames,
        "photometric": _text_tag(ds, "PhotometricInterpretation", 16),
        "has_pixels": has_pixels,
        "preview": False,
    }
    preview = None
    if has_pixels:
        try:
            preview = _dicom_preview(path, ds, frames)
            meta["preview"] = True
        # Compressed transfer syntaxes need decoders that may not be installed;
        # the file is still stored and downloadable, only without a preview.
        except Exception as exc:
            log.warning("no preview for a DICOM file: %s", type(exc).__name__)
            meta["preview_error"] = type(exc).__name__
    return Analysis(kind="dicom", media_type=MEDIA_TYPES["dicom"], meta=meta, preview_png=preview)


def _dicom_preview(path: Path, ds: pydicom.Dataset, frames: int) -> bytes:
    """A PNG of the (first) frame: modality LUT, then the window, 8 bits."""
    arr = pixel_array(path, index=0 if frames > 1 else None)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples == 3 and arr.ndim == 3:
        rgb = arr.astype(np.float64)
        top = float(rgb.max()) or 1.0
        scale = 255.0 / top if top > 255 else 1.0
        img = Image.fromarray(np.clip(rgb * scale, 0, 255).astype(np.uint8), "RGB")
    else:
        if arr.ndim != 2:
            raise ValueError("unexpected pixel array shape")
        values = arr.astype(np.float64)
        slope = _first_number(ds.get("RescaleSlope"))
        intercept = _first_number(ds.get("RescaleIntercept"))
        values = values * (1.0 if slope is None else slope) + (intercept or 0.0)
        center = _first_number(ds.get("WindowCenter"))
        width = _first_number(ds.get("WindowWidth"))
        if center is not None and width is not None and width >= 1:
            low, high = center - width / 2.0, center + width / 2.0
        else:
            low, high = float(values.min()), float(values.max())
        if high > low:
            grey = (np.clip(values, low, high) - low) / (high - low) * 255.0
        else:
            grey = np.zeros_like(values)
        if photometric == "MONOCHROME1":
            grey = 255.0 - grey
        img = Image.fromarray(np.rint(grey).astype(np.uint8), "L")
    img.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


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
