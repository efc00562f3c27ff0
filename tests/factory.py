"""Small synthetic DICOM radiographs for unit tests, built with pydicom in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

SOP_CLASSES = {
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "SC": SecondaryCaptureImageStorage,
}


def ramp(rows: int, columns: int, bits_stored: int) -> np.ndarray:
    """A (rows, columns) image whose values run over the whole stored range, 0 first."""
    top = 2**bits_stored - 1
    values = np.linspace(0, top, rows * columns).round().astype(np.int64)
    return values.reshape(rows, columns)


def make_dataset(
    *,
    pixels: np.ndarray | None = None,
    rows: int = 64,
    columns: int = 96,
    bits_stored: int = 12,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    sop_class: str = "DX",
    **attributes: object,
) -> Dataset:
    """A native (Explicit VR Little Endian) single-frame greyscale radiograph.

    ``pixels`` defaults to :func:`ramp`; keyword ``attributes`` are set on the data set
    (a value of None deletes the attribute, e.g. ``ViewPosition=None``).
    """
    if pixels is None:
        pixels = ramp(rows, columns, bits_stored)
    bits_allocated = 8 if bits_stored <= 8 else 16
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    sop_class_uid = SOP_CLASSES.get(sop_class, sop_class)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Manufacturer = "Test Vendor"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = pixels.astype(dtype).tobytes()
    for keyword, value in attributes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def write(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a DICOM file (preamble, DICM, file meta) and return ``path``."""
    ds.save_as(path, enforce_file_format=True)
    return path
