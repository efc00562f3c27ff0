"""DICOM Segmentation of a pneumothorax, written with highdicom.

One BINARY segment ("Pneumothorax") per positive image. UIDs are derived from the source
image and the model, so the same analysis always yields the same object and a PACS that
receives it twice keeps one copy.
"""

from __future__ import annotations

import copy
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.tag import Tag

import triage
from triage.dicom import codes
from triage.models.package import ModelPackage

#: Namespace of the name-based UUIDs behind our UIDs (fixed forever: changing it would
#: change every UID we have ever sent).
UID_NAMESPACE = uuid.UUID("6b1c3e9a-4f2d-5a7e-9c1b-2d8e4f6a0b3c")
SERIES_NUMBER = 9001
NOT_FOR_CLINICAL_USE = "NOT FOR CLINICAL USE"
#: PatientOrientation assumed when the source has none: the radiographic convention
#: for a frontal chest image (rows towards the patient's left, columns towards the feet).
CONVENTIONAL_ORIENTATION = ("L", "F")
#: Type 2 attributes highdicom copies from the source; an absent one is written empty.
COPIED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
AGE = re.compile(r"^\d{3}[DWMY]$")
PIXEL_DATA = Tag("PixelData")


@dataclass(frozen=True, kw_only=True)
class Algorithm:
    """The algorithm that made a segmentation, as written into the SEG."""

    name: str
    version: str
    research_only: bool

    @classmethod
    def from_package(cls, package: ModelPackage) -> Algorithm:
        """Describe ``package``."""
        return cls(name=package.name, version=package.version, research_only=package.research_only)


def derived_uid(*parts: str) -> str:
    """A UID under 2.25 derived from ``parts`` by a name-based (SHA-1) UUID."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '|'.join(parts)).int}"


def seg_uids(source_sop_instance_uid: str, algorithm: Algorithm) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the SEG of one source image."""
    key = (source_sop_instance_uid, algorithm.name, algorithm.version)
    return derived_uid("seg-series", *key), derived_uid("seg-instance", *key)


def series_description(algorithm: Algorithm) -> str:
    """Series description, flagged NOT FOR CLINICAL USE for synthetic or research models."""
    text = "Pneumothorax AI outline"
    if algorithm.research_only:
        text = f"{text} - {NOT_FOR_CLINICAL_USE}"
    return text


def build_segmentation(
    source: Dataset, mask: np.ndarray, algorithm: Algorithm
) -> hd.seg.Segmentation:
    """Build the SEG of ``mask`` over the single-frame image ``source``.

    Parameters
    ----------
    source
        The source radiograph's dataset (pixel data need not be decoded).
    mask
        Boolean array of the source's Rows×Columns; must not be empty.
    algorithm
        Name, version and research flag of the model.

    Raises
    ------
    ValueError
        If the mask's shape differs from the source's or the mask is empty.
    """
    shape = (int(source.Rows), int(source.Columns))
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from the source's Rows×Columns {shape}")
    if not mask.any():
        raise ValueError("mask is empty: a SEG is written for positive images only")
    source = source_header(source)
    series_uid, sop_uid = seg_uids(str(source.SOPInstanceUID), algorithm)
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=codes.ARTIFICIAL_INTELLIGENCE, version=algorithm.version
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Pneumothorax",
        segmented_property_category=codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
        segmented_property_type=codes.PNEUMOTHORAX,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=identification,
        anatomic_regions=[codes.LUNG],
    )
    equipment = hd.ContributingEquipment(
        manufacturer=triage.MANUFACTURER,
        purpose_of_reference=codes.PROCESSING_EQUIPMENT,
        manufacturer_model_name=algorithm.name,
        software_versions=(triage.__version__, algorithm.version),
        contribution_description=(
            f"Pneumothorax segmentation by {algorithm.name} {algorithm.version}"
        ),
    )
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=mask.astype(np.uint8)[None],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=triage.MANUFACTURER,
        manufacturer_model_name=algorithm.name,
        software_versions=f"{triage.__version__} model {algorithm.version}",
        device_serial_number=algorithm.version,
        content_label="PNEUMOTHORAX",
        content_description="Pneumothorax outline",
        contributing_equipment=[equipment],
    )
    seg.SeriesDescription = series_description(algorithm)
    orientation = source.get("PatientOrientation") or CONVENTIONAL_ORIENTATION
    seg.PatientOrientation = list(orientation)
    return seg


def source_header(source: Dataset) -> Dataset:
    """A copy of the source's header, mended where real files break what a SEG copies.

    Pixel data is left out (the SEG does not need it). Absent Type 2 patient and study
    attributes are added empty; a zero or negative pixel spacing (seen in real CR) is
    dropped rather than copied; a Patient's Age written without its unit (``62``) is
    rewritten as ``062Y``, and dropped if it cannot be read.
    """
    header = Dataset()
    for element in source:
        if element.tag != PIXEL_DATA:
            header.add(copy.deepcopy(element))
    if hasattr(source, "file_meta"):
        header.file_meta = copy.deepcopy(source.file_meta)
    for keyword in COPIED_TYPE2:
        if keyword not in header:
            setattr(header, keyword, "")
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = header.get(keyword)
        if value is not None and (len(value) != 2 or min(float(v) for v in value) <= 0):
            del header[keyword]
    age = str(header.get("PatientAge", "") or "")
    if age and not AGE.match(age):
        if age.isdigit() and len(age) <= 3:
            header.PatientAge = f"{int(age):03d}Y"
        else:
            del header.PatientAge
    return header


def write_segmentation(seg: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``seg`` to ``path`` through a temporary name, so no partial file is left."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    seg.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, target)
    return target


def seg_frames(seg: Dataset) -> list[tuple[str, np.ndarray]]:
    """(source SOP Instance UID, boolean mask) for each frame of a SEG.

    Read with pydicom, not highdicom's reader: highdicom 0.28 refuses the Pixel Measures it
    writes itself for a projection radiograph (Pixel Spacing without Slice Thickness).

    Raises
    ------
    ValueError
        If a frame cannot be tied to a source image or the pixel data cannot be read.
    """
    try:
        frames = seg.pixel_array.astype(bool)
    except (AttributeError, KeyError, ValueError) as exc:
        raise ValueError(f"unreadable SEG pixel data: {exc}") from exc
    frames = frames[None] if frames.ndim == 2 else frames
    referenced = [
        str(ref.ReferencedSOPInstanceUID)
        for item in seg.get("ReferencedSeriesSequence", [])
        for ref in item.get("ReferencedInstanceSequence", [])
    ]
    per_frame = seg.get("PerFrameFunctionalGroupsSequence") or []
    out = []
    for index, frame in enumerate(frames):
        uid = referenced[0] if len(referenced) == 1 else None
        if index < len(per_frame) and "DerivationImageSequence" in per_frame[index]:
            source = per_frame[index].DerivationImageSequence[0].SourceImageSequence[0]
            uid = str(source.ReferencedSOPInstanceUID)
        if uid is None:
            raise ValueError(f"SEG frame {index + 1} names no source image")
        out.append((uid, frame))
    return out
