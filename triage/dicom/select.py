"""Eligibility: which incoming DICOM objects are frontal chest radiographs worth analysing.

Header only: nothing here decodes or even loads pixel data. The rules go by Modality, Body
Part Examined and View Position rather than by SOP class alone, because SIIM and NIH images
are Secondary Capture objects with Modality CR or DX.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import (
    DigitalIntraOralXRayImageStorageForProcessing,
    DigitalMammographyXRayImageStorageForProcessing,
    DigitalXRayImageStorageForProcessing,
    SegmentationStorage,
    SurfaceSegmentationStorage,
)

import triage

__all__ = [
    "CHEST_BODY_PARTS",
    "FRONTAL_VIEWS",
    "LATERAL_VIEWS",
    "NON_IMAGE_MODALITIES",
    "RADIOGRAPH_MODALITIES",
    "Eligibility",
    "eligibility",
]

#: Modalities of radiographs we analyse (Secondary Capture objects included).
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX"})
#: Modalities of objects that are not images, our own outputs among them.
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "PR", "KO"})
#: Segmentation SOP classes (Label Map Segmentation is new in 2024, hence the literal).
SEGMENTATION_SOP_CLASSES = frozenset(
    {SegmentationStorage, SurfaceSegmentationStorage, "1.2.840.10008.5.1.4.1.1.66.7"}
)
#: Structured Report SOP classes, Key Object Selection included, share this root.
SR_SOP_CLASS_ROOT = "1.2.840.10008.5.1.4.1.1.88."
#: Raw detector images, not meant for display: a model trained on displayed images fails.
FOR_PROCESSING_SOP_CLASSES = frozenset(
    {
        DigitalXRayImageStorageForProcessing,
        DigitalMammographyXRayImageStorageForProcessing,
        DigitalIntraOralXRayImageStorageForProcessing,
    }
)
#: Body Part Examined values of a chest; an absent or empty value is accepted too.
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX"})
#: View Position values of a frontal chest; an absent or empty value is accepted too.
FRONTAL_VIEWS = frozenset({"PA", "AP"})
#: View Position values of a lateral chest, for a clearer reason than "not PA or AP".
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLAT", "RLAT"})


@dataclass(frozen=True, kw_only=True)
class Eligibility:
    """Whether an object should be analysed, and if not, one plain sentence saying why."""

    eligible: bool
    reason: str | None = None


def eligibility(ds: Dataset, *, min_size: int = 256) -> Eligibility:
    """Decide from the header whether ``ds`` is a frontal chest radiograph to analyse.

    Parameters
    ----------
    ds
        The data set; its pixel data is neither decoded nor loaded.
    min_size
        Smallest accepted number of rows and of columns.

    Raises
    ------
    ValueError
        If ``min_size`` is less than 1.
    """
    if min_size < 1:
        raise ValueError(f"min_size must be at least 1, got {min_size}")
    for rule in (_not_ours, _radiograph, _chest, _frontal):
        reason = rule(ds)
        if reason is not None:
            return Eligibility(eligible=False, reason=reason)
    reason = _image(ds, min_size)
    if reason is not None:
        return Eligibility(eligible=False, reason=reason)
    return Eligibility(eligible=True)


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword) or "").strip().upper()


def _not_ours(ds: Dataset) -> str | None:
    if str(ds.get("Manufacturer") or "").strip() == triage.MANUFACTURER:
        return f"object produced by {triage.MANUFACTURER}"
    modality, sop_class = _text(ds, "Modality"), str(ds.get("SOPClassUID") or "")
    if modality in NON_IMAGE_MODALITIES:
        return f"{modality} object, not an image"
    if sop_class in SEGMENTATION_SOP_CLASSES:
        return "SEG object, not an image"
    if sop_class.startswith(SR_SOP_CLASS_ROOT):
        return "SR object, not an image"
    return None


def _radiograph(ds: Dataset) -> str | None:
    modality = _text(ds, "Modality")
    if modality not in RADIOGRAPH_MODALITIES:
        return f"modality is {modality or 'missing'}, not CR or DX"
    if (
        str(ds.get("SOPClassUID") or "") in FOR_PROCESSING_SOP_CLASSES
        or _text(ds, "PresentationIntentType") == "FOR PROCESSING"
    ):
        return "image is For Processing (raw detector data), not For Presentation"
    return None


def _chest(ds: Dataset) -> str | None:
    body_part = _text(ds, "BodyPartExamined")
    if body_part and body_part not in CHEST_BODY_PARTS:
        return f"body part is {body_part}, not CHEST"
    return None


def _frontal(ds: Dataset) -> str | None:
    view = _text(ds, "ViewPosition")
    if not view or view in FRONTAL_VIEWS:
        return None
    if view in LATERAL_VIEWS:
        return f"lateral view ({view})"
    return f"view position is {view}, not PA or AP"


def _image(ds: Dataset, min_size: int) -> str | None:
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows < min_size or columns < min_size:
        return (
            f"image is {rows} x {columns} pixels, smaller than the minimum {min_size} x {min_size}"
        )
    if "PixelData" not in ds:
        return "no pixel data"
    photometric = _text(ds, "PhotometricInterpretation")
    samples = int(ds.get("SamplesPerPixel") or 1)
    if photometric not in ("", "MONOCHROME1", "MONOCHROME2") or samples != 1:
        return f"colour image ({photometric or f'{samples} samples'}), not greyscale"
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        return f"multi-frame image ({frames} frames), not a single radiograph"
    return None
