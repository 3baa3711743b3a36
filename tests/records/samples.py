"""Small but valid files of every accepted kind, built in the test run."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

# A name that must never leave the DICOM file (not in meta, not in logs).
DICOM_PATIENT = "测试^患者"
LAB_REPORT = "血常规检验报告\n白细胞 6.5 ×10^9/L（参考 3.5-9.5）\n血红蛋白 128 g/L\n"


def pdf(pages: int = 2) -> bytes:
    """A minimal PDF with ``pages`` empty pages and a correct xref table."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        *[b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>" for _ in range(pages)],
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def image(fmt: str, width: int = 40, height: int = 30) -> bytes:
    """A JPEG or PNG picture (a gradient)."""
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    out = io.BytesIO()
    Image.fromarray(np.stack([ramp, ramp[::-1], ramp], axis=-1), "RGB").save(out, format=fmt)
    return out.getvalue()


def dicom(
    *,
    pixels: bool = True,
    frames: int = 1,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = (1000.0, 2000.0),
    size: int = 64,
) -> bytes:
    """A DICOM file (Secondary Capture, 16-bit) with or without pixel data."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = DICOM_PATIENT
    ds.PatientID = "P123456"
    ds.Modality = "CT"
    ds.StudyDate = "20261120"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    if pixels:
        ds.Rows = size
        ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        # A ramp from 0 (left) to 4000 (right), the same in every frame.
        ramp = np.tile(np.linspace(0, 4000, size).astype(np.uint16), (size, 1))
        data = np.stack([ramp] * frames) if frames > 1 else ramp
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PixelData = data.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
