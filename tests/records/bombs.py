"""Hostile files, built in the test run without holding what they expand to."""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from .samples import DICOM_PATIENT, dicom

MiB = 1024 * 1024
# A plain-text file ClamAV is known to flag (the EICAR anti-malware test file).
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def _dataset(syntax: str, rows: int, columns: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = DICOM_PATIENT
    ds.PatientID = "P123456"
    ds.Modality = "OT"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


@functools.cache
def deflated_dicom(inflated: int = 256 * MiB) -> bytes:
    """A deflated DICOM file whose data set inflates to about ``inflated`` bytes.

    The header is written by pydicom; the pixel data (zeros) is deflated in
    chunks, so the test never holds the inflated bytes.
    """
    rows = columns = int((inflated // 2) ** 0.5)
    ds = _dataset(DeflatedExplicitVRLittleEndian, rows, columns)
    head = DicomBytesIO()
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    pixels = rows * columns * 2
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixels)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = io.BytesIO()
    out.write(head.getvalue())
    out.write(deflater.compress(body.getvalue() + element))
    zeros = bytes(MiB)
    left = pixels
    while left:
        n = min(left, MiB)
        out.write(deflater.compress(zeros[:n]))
        left -= n
    out.write(deflater.flush())
    return out.getvalue()


def rle_dicom(size: int) -> bytes:
    """An RLE Lossless DICOM file of one ``size`` x ``size`` 16-bit frame (one grey).

    Each of the two byte planes is one long run: a file of ~1 MiB per 64
    megapixels that decodes to ``size * size * 2`` bytes.
    """
    ds = _dataset(RLELossless, size, size)
    run = b"\x81\x07"  # 128 copies of 0x07
    plane = run * (size * size // 128) + (b"\x00\x07" * (size * size % 128))
    header = struct.pack("<16I", 2, 64, 64 + len(plane), *([0] * 13))
    ds.PixelData = encapsulate([header + plane + plane])
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def huge_header_dicom(rows: int, columns: int, frames: int = 1) -> bytes:
    """An uncompressed DICOM file that announces a large image but carries 2 bytes."""
    ds = _dataset(ExplicitVRLittleEndian, rows, columns)
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = b"\0\0"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_without_data_set() -> bytes:
    """A preamble, ``DICM`` and a file meta group: nothing else."""
    data = dicom()
    group_length = struct.unpack("<I", data[140:144])[0]
    return data[: 132 + 12 + group_length]


def png(width: int, height: int) -> bytes:
    """A black bilevel PNG (tiny on disk, ``width * height`` pixels)."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, format="PNG")
    return out.getvalue()


def pdf_without_pages() -> bytes:
    """A well-formed PDF whose page tree is empty."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 3\n0000000000 65535 f \n")
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()
