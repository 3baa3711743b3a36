"""Write the synthetic sample studies (no person in them). Run: python make_phantom.py

- phantom_mr_16frames.dcm: a multi-frame MR series. A disc that grows and
  shrinks through 16 frames, with the frame's number as a row of bright marks
  along the top edge, so that every frame looks different and a test (or a
  person) can tell which one is shown. 16-bit unsigned values 0-2000, window
  1000/2000.
- phantom_ct_slice{1,2,3}.dcm: a CT series of three single-frame instances (a
  chest-like ellipse: soft tissue, two lungs, a spine; in Hounsfield units
  through RescaleIntercept -1024), the lungs smaller from slice to slice; window
  40/400. A series spread over instances, as CT scanners send them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

FRAMES = 16
SIZE = 128
# Fixed UIDs (under pydicom's example root 1.2.826.0.1.3680043.8.498): the file
# is byte-for-byte reproducible.
ROOT = "1.2.826.0.1.3680043.8.498.7319."


def pixels() -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    frames = []
    for n in range(FRAMES):
        radius = 14 + 36 * np.sin(np.pi * (n + 0.5) / FRAMES)
        r = np.hypot(x - SIZE / 2, y - SIZE / 2)
        image = np.where(r < radius, 1200 - 8 * r, 150).astype(np.float64)
        image += 120 * np.sin(x / 6.0) * (r < radius)
        for mark in range(n + 1):
            image[4:10, 4 + 7 * mark : 9 + 7 * mark] = 2000
        frames.append(np.clip(image, 0, 2000).astype(np.uint16))
    return np.stack(frames)


def main() -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = ROOT + "3.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = ROOT + "1"
    ds.SeriesInstanceUID = ROOT + "2"
    ds.PatientName = "PHANTOM^SYNTHETIC"
    ds.PatientID = "PHANTOM-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.Modality = "MR"
    ds.StudyDate = "20261118"
    ds.StudyTime = "093000"
    ds.StudyDescription = "Brain MR (phantom)"
    ds.SeriesDescription = "T2 axial"
    ds.SeriesNumber = 2
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "HEAD"
    ds.Rows = SIZE
    ds.Columns = SIZE
    ds.NumberOfFrames = FRAMES
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter = 1000
    ds.WindowWidth = 2000
    ds.PixelData = pixels().tobytes()
    ds.save_as(Path(__file__).with_name("phantom_mr_16frames.dcm"), enforce_file_format=True)


def ct_slices() -> None:
    size = 64
    y, x = np.mgrid[0:size, 0:size]
    study, series = ROOT + "11", ROOT + "12"
    for n in (1, 2, 3):
        hu = np.full((size, size), -1000.0)
        body = ((x - 32) / 28) ** 2 + ((y - 34) / 20) ** 2 < 1
        hu[body] = 40
        lung = 9 - 2 * n
        for cx in (20, 44):
            hu[((x - cx) / lung) ** 2 + ((y - 32) / (lung + 4)) ** 2 < 1] = -800
        hu[(x - 32) ** 2 + (y - 48) ** 2 < 16] = 700
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = f"{ROOT}13.{n}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.PatientName = "PHANTOM^SYNTHETIC"
        ds.PatientID = "PHANTOM-0001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.Modality = "CT"
        ds.StudyDate = "20261120"
        ds.StudyTime = "101500"
        ds.StudyDescription = "Chest CT (phantom)"
        ds.SeriesDescription = "Axial 5 mm"
        ds.SeriesNumber = 3
        ds.InstanceNumber = n
        ds.BodyPartExamined = "CHEST"
        ds.Rows = size
        ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        ds.PixelData = (hu + 1024).astype(np.uint16).tobytes()
        ds.save_as(Path(__file__).with_name(f"phantom_ct_slice{n}.dcm"), enforce_file_format=True)


if __name__ == "__main__":
    main()
    ct_slices()
