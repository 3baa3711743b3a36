"""DICOM uploads: bounded reading, de-identification on store, and the preview.

Reading is bounded before anything is decoded: a deflated data set is inflated
once in small chunks only to count its size (``max_inflated_bytes``), and the
pixel data's decoded size is computed from the header (rows x columns x samples x
bits allocated x frames) and refused past ``max_pixels`` / ``max_decoded_bytes``.

The stored file is de-identified following the DICOM basic application level
confidentiality profile (PS3.15 E.1) with the *retain UIDs*, *retain longitudinal
temporal information* and *retain patient characteristics* options: names and IDs
of the patient and of staff, the birth date, addresses, phone numbers, accession
numbers and private tags are removed or emptied; study dates, UIDs, sex, age,
size and weight and all clinical content stay. The original bytes are not kept:
who the patient is lives in the document's row, which the clinic entered.
Text burned into the pixels (``BurnedInAnnotation``) cannot be removed this way.

Only technical tags are reported in ``meta``, and nothing read from a file is
logged. Everything here blocks and is meant to run in the parsing child
(``records.sandbox``).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
import pydicom.config
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.multival import MultiValue
from pydicom.pixels.utils import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from records.errors import UnreadableContent
from records.limits import Limits
from records.vocab import ErrorCode

PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# The longest side of a preview, in pixels.
PREVIEW_MAX_SIDE = 1024
INFLATE_CHUNK = 64 * 1024
# Emptied (the attribute is type 2: it must be present): PS3.15 table E.1-1 "Z".
BLANK = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
)
# Removed: PS3.15 table E.1-1 "X" for the patient's and the staff's identity.
REMOVE = (
    "PatientBirthTime",
    "PatientBirthName",
    "PatientMotherBirthName",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "IssuerOfPatientID",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientTelecomInformation",
    "CountryOfResidence",
    "RegionOfResidence",
    "CurrentPatientLocation",
    "PatientInsurancePlanCodeSequence",
    "PatientReligiousPreference",
    "MilitaryRank",
    "BranchOfService",
    "MedicalRecordLocator",
    "Occupation",
    "PatientComments",
    "AdditionalPatientHistory",
    "ResponsiblePerson",
    "ResponsibleOrganization",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence",
    "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
)
# LO: at most 64 characters.
DEIDENTIFICATION_METHOD = "PS3.15 E.1 basic; retain UIDs, dates, characteristics"


def _refuse(message: str, code: ErrorCode = ErrorCode.INVALID_DICOM) -> UnreadableContent:
    return UnreadableContent(message, code=code)


def check_inflated_size(path: Path, limit: int) -> None:
    """Refuse a deflated data set that inflates past ``limit`` bytes.

    The stream is inflated chunk by chunk into a small buffer that is thrown
    away: memory stays at a few hundred kilobytes whatever the ratio.
    """
    meta = read_file_meta_info(path)
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        raise _refuse("a deflated DICOM file needs its file meta group length")
    # Preamble (128) + "DICM" (4) + the group length element itself (12).
    offset = 132 + 12 + int(group_length)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with path.open("rb") as fh:
        fh.seek(offset)
        while chunk := fh.read(INFLATE_CHUNK):
            data = chunk
            while data:
                try:
                    out = inflater.decompress(data, INFLATE_CHUNK)
                except zlib.error as exc:
                    raise _refuse("the deflated DICOM data set is damaged") from exc
                total += len(out)
                if total > limit:
                    raise _refuse(
                        f"the DICOM data set inflates to more than {limit} bytes",
                        ErrorCode.DECODED_TOO_LARGE,
                    )
                data = inflater.unconsumed_tail
            if inflater.eof:
                break


def _decoded_sizes(ds: Dataset) -> tuple[int, int]:
    """Pixels of one frame, and the bytes the whole pixel data decodes to."""
    try:
        rows = int(ds.get("Rows") or 0)
        columns = int(ds.get("Columns") or 0)
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.get("BitsAllocated") or 8)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError) as exc:
        raise _refuse("the DICOM image size tags are not numbers") from exc
    if min(rows, columns, samples, bits, frames) < 0:
        raise _refuse("the DICOM image size tags are negative")
    pixels = rows * columns
    return pixels, (pixels * samples * bits * frames + 7) // 8


def _text_tag(ds: Dataset, keyword: str, limit: int = 64) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    text = str(value).strip()
    return text[:limit] or None


def _iso_date(value: str | None) -> str | None:
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def read(path: Path, limits: Limits, clean_to: Path | None) -> dict[str, Any]:
    """Check a DICOM file against ``limits``, write its de-identified copy, read its tags.

    Args:
        path: the uploaded file.
        limits: the sizes it may announce or inflate to.
        clean_to: where to write the de-identified file (None: write nothing).

    Returns:
        The technical tags (``meta``).

    Raises:
        UnreadableContent: ``invalid_dicom`` or ``decoded_too_large``.
    """
    # Invalid values are ignored rather than reported: pydicom's warnings quote
    # the offending value, which may be the patient's name.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        syntax = read_file_meta_info(path).get("TransferSyntaxUID")
    # A parser of untrusted bytes: any failure means the header is unreadable.
    except Exception as exc:
        raise _refuse("pydicom cannot read this DICOM file") from exc
    if syntax == DeflatedExplicitVRLittleEndian:
        check_inflated_size(path, limits.max_inflated_bytes)
    try:
        # Large values (the pixels) are not loaded here, only noted.
        ds = pydicom.dcmread(path, defer_size="64 KB")
    except Exception as exc:
        raise _refuse("pydicom cannot read this DICOM file") from exc
    if "SOPClassUID" not in ds and "PatientID" not in ds and "StudyInstanceUID" not in ds:
        # A preamble and "DICM" followed by nothing DICOM-like.
        raise _refuse("the DICOM file has no data set")
    has_pixels = any(tag in ds for tag in PIXEL_TAGS)
    pixels, decoded = _decoded_sizes(ds)
    if has_pixels and (pixels > limits.max_pixels or decoded > limits.max_decoded_bytes):
        raise _refuse(
            f"the DICOM image would decode to {decoded} bytes ({pixels} pixels a frame), "
            f"over the limit of {limits.max_decoded_bytes} bytes ({limits.max_pixels} pixels)",
            ErrorCode.DECODED_TOO_LARGE,
        )
    if has_pixels and (pixels == 0 or decoded == 0):
        raise _refuse("the DICOM image has no size")
    meta: dict[str, Any] = {
        "modality": _text_tag(ds, "Modality", 16),
        "study_date": _iso_date(_text_tag(ds, "StudyDate", 16)),
        "body_part": _text_tag(ds, "BodyPartExamined"),
        "rows": int(ds.Rows) if "Rows" in ds else None,
        "columns": int(ds.Columns) if "Columns" in ds else None,
        "frames": int(ds.get("NumberOfFrames") or 1),
        "photometric": _text_tag(ds, "PhotometricInterpretation", 16),
        "has_pixels": has_pixels,
        "preview": False,
    }
    if clean_to is not None:
        deidentify(ds)
        try:
            ds.save_as(clean_to, enforce_file_format=True)
        except Exception as exc:
            raise _refuse("this DICOM file cannot be written back") from exc
    return meta


def deidentify(ds: Dataset) -> None:
    """Remove the patient's and the staff's identity from ``ds`` (see the module doc)."""

    def clean(dataset: Dataset, element: DataElement) -> None:
        if element.keyword in BLANK:
            element.value = ""
        elif element.keyword in REMOVE or element.tag.is_private:
            del dataset[element.tag]
        elif element.VR == "PN":
            # Any other person's name (a nurse, a consulting physician).
            element.value = ""

    ds.walk(clean)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD


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


def preview(path: Path, frames: int) -> bytes:
    """A PNG of the (first) frame: modality LUT, then the window, 8 bits.

    The frame is decoded once; it is thinned to about the preview's size before
    any floating-point work, so a large frame costs its decoded size, not eight
    times that.
    """
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        # pixel_array(path) cannot seek in a deflated stream; the data set was
        # checked to inflate within the limit.
        arr = pydicom.dcmread(path).pixel_array
        arr = arr[0] if frames > 1 else arr
    else:
        arr = pixel_array(path, index=0 if frames > 1 else None)
    step = max(1, -(-max(arr.shape[0], arr.shape[1]) // PREVIEW_MAX_SIDE))
    arr = arr[::step, ::step]
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


@dataclass(frozen=True, kw_only=True)
class Frame:
    """One frame's values, for the viewer to window on the client.

    ``data`` is little-endian float32 (rows x columns, the modality LUT applied)
    for a greyscale image, or 8-bit RGB (rows x columns x 3) for a colour one.
    """

    index: int
    frames: int
    rows: int
    columns: int
    samples: int
    photometric: str
    center: float
    width: float
    low: float
    high: float
    data: bytes


class _Buffer:
    """A stored file as pydicom's "readable buffer": read, seek and tell only.

    pydicom takes an ``io.BufferedReader`` for a file it may reopen by name; the
    decrypting reader of ``records.sealed`` has no name (and reopening would read
    the ciphertext), so every source goes through this view.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


def frame(fh: BinaryIO, index: int) -> Frame:
    """Decode frame ``index`` (from 0) of a stored DICOM file.

    The file is a stored document's de-identified copy, checked against the
    ``Limits`` when it was received; only the asked frame is decoded when the
    transfer syntax is native (pydicom reads one frame's bytes).

    Raises:
        IndexError: no such frame.
        ValueError: no pixel data, or pixels pydicom cannot decode here
            (a compressed syntax without its decoder).
    """
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    source: Any = _Buffer(fh)
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    frames = int(ds.get("NumberOfFrames") or 1)
    if not 0 <= index < frames:
        raise IndexError(f"frame {index} of {frames}")
    source.seek(0)
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        arr = pydicom.dcmread(source).pixel_array
        arr = arr[index] if frames > 1 else arr
    else:
        arr = pixel_array(source, index=index if frames > 1 else None)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    samples = int(ds.get("SamplesPerPixel") or 1)
    rows, columns = int(arr.shape[0]), int(arr.shape[1])
    if samples == 3 and arr.ndim == 3:
        rgb = arr.astype(np.float64)
        top = float(rgb.max()) or 1.0
        scale = 255.0 / top if top > 255 else 1.0
        data = np.clip(rgb * scale, 0, 255).astype(np.uint8).tobytes()
        return Frame(
            index=index,
            frames=frames,
            rows=rows,
            columns=columns,
            samples=3,
            photometric="RGB",
            center=127.5,
            width=256.0,
            low=0.0,
            high=255.0,
            data=data,
        )
    if arr.ndim != 2:
        raise ValueError("unexpected pixel array shape")
    values = arr.astype(np.float32)
    slope = _first_number(ds.get("RescaleSlope"))
    intercept = _first_number(ds.get("RescaleIntercept"))
    values = values * np.float32(1.0 if slope is None else slope) + np.float32(intercept or 0.0)
    low, high = float(values.min()), float(values.max())
    center = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if center is None or width is None or width < 1:
        # No window in the file: the frame's whole range.
        center, width = (low + high) / 2.0, max(high - low, 1.0)
    return Frame(
        index=index,
        frames=frames,
        rows=rows,
        columns=columns,
        samples=1,
        photometric="MONOCHROME1" if photometric == "MONOCHROME1" else "MONOCHROME2",
        center=center,
        width=width,
        low=low,
        high=high,
        data=values.astype("<f4").tobytes(),
    )
