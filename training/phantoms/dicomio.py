"""A phantom as a CR or DX (For Presentation) DICOM object: :func:`phantom_dataset`."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from training.phantoms.errors import PhantomError
from training.phantoms.phantom import Phantom

MANUFACTURER = "Synthetic Phantom Co"
MODALITIES = {"CR": ComputedRadiographyImageStorage, "DX": DigitalXRayImageStorageForPresentation}
PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
BITS_STORED = (8, 10, 12, 15, 16)
TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless)
#: View Code Sequence items (CID 4010) for each View Position.
_VIEW_CODES = {
    "PA": ("399348003", "SCT", "postero-anterior"),
    "AP": ("399182009", "SCT", "antero-posterior"),
    "LL": ("399173006", "SCT", "left lateral"),
}
#: Stored values span this share of ``0 .. 2**bits_stored - 1`` (margins keep noise unclipped).
_VALUE_RANGE = (0.02, 0.98)


@dataclass(frozen=True, kw_only=True)
class DicomOptions:
    """How a phantom is encoded.

    Parameters
    ----------
    modality
        ``"CR"`` (CR Image Storage) or ``"DX"`` (Digital X-Ray Image Storage - For
        Presentation).
    photometric
        ``"MONOCHROME2"``, or ``"MONOCHROME1"`` to store inverted (high value is dark).
    bits_stored
        8, 10, 12, 15 or 16; Bits Allocated is 8 for 8 and 16 otherwise.
    transfer_syntax
        Explicit or Implicit VR Little Endian, RLE Lossless or JPEG 2000 Lossless.
    rescale
        CR only: write a non-trivial Rescale Slope and Intercept (stored value times 0.5
        minus a quarter of the range). DX For Presentation always carries the identity
        rescale the standard requires.

    Raises
    ------
    PhantomError
        If any option is not one of the values listed above, or ``rescale`` is asked of DX.
    """

    modality: str = "DX"
    photometric: str = "MONOCHROME2"
    bits_stored: int = 12
    transfer_syntax: str = ExplicitVRLittleEndian
    rescale: bool = False

    def __post_init__(self) -> None:
        # Plain strings are accepted; keep a UID so ``.name`` and ``.is_compressed`` work.
        object.__setattr__(self, "transfer_syntax", UID(str(self.transfer_syntax)))
        for name, value, allowed in (
            ("modality", self.modality, tuple(MODALITIES)),
            ("photometric", self.photometric, PHOTOMETRICS),
            ("bits_stored", self.bits_stored, BITS_STORED),
            ("transfer_syntax", self.transfer_syntax, TRANSFER_SYNTAXES),
        ):
            if value not in allowed:
                raise PhantomError(
                    f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}"
                )
        if self.rescale and self.modality == "DX":
            raise PhantomError(
                "rescale=True needs modality CR: DX For Presentation requires Rescale Slope 1 "
                "and Intercept 0"
            )

    @property
    def rescale_slope_intercept(self) -> tuple[float, float]:
        """``(slope, intercept)`` mapping stored values to modality values."""
        if not self.rescale:
            return 1.0, 0.0
        return 0.5, -float(2 ** (self.bits_stored - 2))


def stored_values(phantom: Phantom, options: DicomOptions) -> np.ndarray:
    """The phantom image as stored pixel values (inverted for MONOCHROME1)."""
    top = 2**options.bits_stored - 1
    low, high = _VALUE_RANGE
    values = np.rint(phantom.image.astype(np.float64) * (top * (high - low)) + top * low)
    if options.photometric == "MONOCHROME1":
        values = top - values
    return values.astype(np.uint8 if options.bits_stored == 8 else np.uint16)


def _window(values: np.ndarray, options: DicomOptions) -> tuple[float, float]:
    """Window centre and width (modality values) covering the anatomy."""
    step = max(1, min(values.shape) // 256)
    low, high = np.percentile(values[::step, ::step], [0.5, 99.5])
    slope, intercept = options.rescale_slope_intercept
    low, high = low * slope + intercept, high * slope + intercept
    return round((low + high) / 2, 1), round(max(high - low, 2.0) * 1.05, 1)


def _file_meta(sop_class: str, sop_instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PHANTOM_1"
    return meta


def _pixel_module(ds: Dataset, values: np.ndarray, options: DicomOptions) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = options.photometric
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated = 8 if options.bits_stored == 8 else 16
    ds.BitsStored = options.bits_stored
    ds.HighBit = options.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = values.tobytes()
    inverse = options.photometric == "MONOCHROME1"
    ds.PresentationLUTShape = "INVERSE" if inverse else "IDENTITY"
    if options.modality == "DX":
        ds.PixelIntensityRelationship = "LOG"
        # +1: low values mean less beam reached the detector (bright on screen); that is
        # MONOCHROME2 storage, MONOCHROME1 stores the other way round.
        ds.PixelIntensityRelationshipSign = -1 if inverse else 1
    slope, intercept = options.rescale_slope_intercept
    if options.rescale or options.modality == "DX":
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, slope, "US"
    ds.WindowCenter, ds.WindowWidth = _window(values, options)
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"


def _acquisition(ds: Dataset, phantom: Phantom, options: DicomOptions, spacing: float) -> None:
    ds.Modality = options.modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = phantom.view
    ds.PatientOrientation = list(phantom.patient_orientation)
    ds.ImageLaterality = "U"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImagerPixelSpacing = [round(spacing, 6)] * 2
    ds.PixelSpacing = [round(spacing, 6)] * 2
    ds.KVP = 120 if phantom.view == "PA" else 100
    ds.DistanceSourceToDetector = 1800 if phantom.view == "PA" else 1000
    anatomy = Dataset()
    anatomy.CodeValue = codes.SCT.Chest.value
    anatomy.CodingSchemeDesignator = "SCT"
    anatomy.CodeMeaning = codes.SCT.Chest.meaning
    ds.AnatomicRegionSequence = [anatomy]
    if options.modality == "DX":
        view = Dataset()
        view.CodeValue, view.CodingSchemeDesignator, view.CodeMeaning = _VIEW_CODES[phantom.view]
        ds.ViewCodeSequence = [view]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "SCINTILLATOR"
        ds.QualityControlImage = "NO"
        ds.PositionerType = ""
        ds.AcquisitionContextSequence = []


def _encode(ds: Dataset, values: np.ndarray, syntax: str) -> None:
    if syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
        return
    # pylibjpeg's RLE encoder is much faster than pydicom's and is the only J2K one.
    ds.compress(syntax, values, encoding_plugin="pylibjpeg", generate_instance_uid=False)


def phantom_dataset(
    phantom: Phantom,
    *,
    options: DicomOptions,
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    patient_id: str,
    patient_name: str,
    accession_number: str,
    study_datetime: datetime.datetime,
    pixel_spacing_mm: float,
    patient_sex: str = "O",
    series_number: int = 1,
    instance_number: int = 1,
) -> Dataset:
    """Encode a phantom as a complete CR or DX DICOM object, file meta included.

    Parameters
    ----------
    phantom
        What to encode.
    options
        Modality, photometric interpretation, bit depth, transfer syntax and rescale.
    study_instance_uid, series_instance_uid, sop_instance_uid
        The object's UIDs.
    patient_id, patient_name, accession_number
        Identifiers; keep them obviously synthetic.
    study_datetime
        Study, series, acquisition and content date and time.
    pixel_spacing_mm
        Imager Pixel Spacing and Pixel Spacing, square pixels.
    patient_sex, series_number, instance_number
        Patient Sex (``"M"``, ``"F"`` or ``"O"``), Series Number and Instance Number.

    Returns
    -------
    pydicom.dataset.Dataset
        Ready for ``save_as(path, enforce_file_format=True)``; decodes losslessly.

    Raises
    ------
    PhantomError
        If ``pixel_spacing_mm`` is not positive or ``patient_sex`` not M, F or O.
    """
    if not pixel_spacing_mm > 0:
        raise PhantomError(f"pixel_spacing_mm must be positive, got {pixel_spacing_mm!r}")
    if patient_sex not in ("M", "F", "O"):
        raise PhantomError(f"patient_sex must be M, F or O, got {patient_sex!r}")
    sop_class = MODALITIES[options.modality]
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_instance_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_instance_uid
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = "", patient_sex
    date, time = study_datetime.strftime("%Y%m%d"), study_datetime.strftime("%H%M%S")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_instance_uid, series_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.AccessionNumber, ds.StudyID = accession_number, accession_number[-16:]
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "XR CHEST"
    ds.SeriesDescription = f"CHEST {phantom.view}"
    ds.SeriesNumber, ds.InstanceNumber = series_number, instance_number
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "Phantom Generator"
    _acquisition(ds, phantom, options, pixel_spacing_mm)
    values = stored_values(phantom, options)
    _pixel_module(ds, values, options)
    _encode(ds, values, options.transfer_syntax)
    return ds
