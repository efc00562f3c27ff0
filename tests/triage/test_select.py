"""Eligibility: frontal chest CR/DX radiographs in, everything else out with a reason."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    ComprehensiveSRStorage,
    CTImageStorage,
    DigitalXRayImageStorageForProcessing,
    SegmentationStorage,
)

import triage
from tests.factory import make_dataset
from triage.dicom.select import Eligibility, eligibility


def check(**attributes: object) -> Eligibility:
    return eligibility(make_dataset(rows=512, columns=512, **attributes))


@pytest.mark.parametrize(
    ("modality", "sop_class"), [("CR", "CR"), ("DX", "DX"), ("CR", "SC"), ("DX", "SC")]
)
def test_cr_and_dx_are_eligible_secondary_capture_included(modality: str, sop_class: str) -> None:
    assert check(modality=modality, sop_class=sop_class) == Eligibility(eligible=True)


def test_ct_is_skipped() -> None:
    result = check(modality="CT", sop_class=CTImageStorage)
    assert result == Eligibility(eligible=False, reason="modality is CT, not CR or DX")


def test_missing_modality_is_skipped() -> None:
    assert check(Modality=None).reason == "modality is missing, not CR or DX"


def test_for_processing_is_skipped() -> None:
    result = check(sop_class=DigitalXRayImageStorageForProcessing)
    assert not result.eligible
    assert "For Processing" in (result.reason or "")
    assert not check(PresentationIntentType="FOR PROCESSING").eligible


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
@pytest.mark.parametrize("body_part", ["CHEST", "chest", "THORAX", "", None])
def test_chest_or_unknown_body_part_is_eligible(body_part: str | None) -> None:
    assert check(BodyPartExamined=body_part).eligible


def test_other_body_part_is_skipped() -> None:
    assert check(BodyPartExamined="ABDOMEN").reason == "body part is ABDOMEN, not CHEST"


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
@pytest.mark.parametrize("view", ["PA", "AP", "ap", "", None])
def test_frontal_or_unknown_view_is_eligible(view: str | None) -> None:
    assert check(ViewPosition=view).eligible


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
@pytest.mark.parametrize("view", ["LL", "RL", "LATERAL", "lat"])
def test_lateral_view_is_skipped(view: str) -> None:
    assert check(ViewPosition=view).reason == f"lateral view ({view.upper()})"


def test_other_view_is_skipped() -> None:
    assert check(ViewPosition="LLD").reason == "view position is LLD, not PA or AP"


def test_small_image_is_skipped() -> None:
    result = eligibility(make_dataset(rows=300, columns=200))
    assert result.reason == "image is 300 x 200 pixels, smaller than the minimum 256 x 256"
    assert eligibility(make_dataset(rows=300, columns=200), min_size=200).eligible


def test_min_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_size must be at least 1, got 0"):
        eligibility(make_dataset(), min_size=0)


def test_our_own_objects_are_skipped() -> None:
    assert check(Manufacturer=triage.MANUFACTURER).reason == "object produced by ptx-triage"
    seg = check(modality="SEG", sop_class=SegmentationStorage, PixelData=None)
    assert seg.reason == "SEG object, not an image"
    # A SEG SOP class with a wrong Modality is still caught by its SOP class.
    assert check(sop_class=SegmentationStorage).reason == "SEG object, not an image"
    sr = check(modality="SR", sop_class=ComprehensiveSRStorage, PixelData=None)
    assert sr.reason == "SR object, not an image"


def test_no_pixel_data_is_skipped() -> None:
    assert check(PixelData=None).reason == "no pixel data"


def test_colour_and_multi_frame_are_skipped() -> None:
    assert not check(PhotometricInterpretation="RGB", SamplesPerPixel=3).eligible
    assert check(NumberOfFrames=4).reason == "multi-frame image (4 frames), not a single radiograph"


def test_pixels_are_never_decoded() -> None:
    ds = make_dataset(rows=512, columns=512)
    ds.PixelData = b"\x00" * 10  # far too short: decoding it would fail
    assert eligibility(ds).eligible


def test_real_tibia_is_skipped_for_its_body_part() -> None:
    ds = pydicom.dcmread(get_testdata_file("RG3_J2KR.dcm"), stop_before_pixels=True)
    ds.PixelData = b""  # stop_before_pixels drops it; eligibility only asks whether it exists
    assert eligibility(ds).reason == "body part is EXTREMITY, not CHEST"


def test_real_chest_cr_is_eligible() -> None:
    assert eligibility(pydicom.dcmread(get_testdata_file("RG1_J2KR.dcm"))).eligible


@pytest.mark.parametrize(
    "name",
    ["nih-cxr14-dx-no-finding.dcm", "siim-cr-negative.dcm", "siim-cr-negative-monochrome1.dcm"],
)
def test_real_secondary_capture_chests_are_eligible(name: str, shared_data: Path) -> None:
    ds = pydicom.dcmread(shared_data / "real" / name)
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert eligibility(ds) == Eligibility(eligible=True)
