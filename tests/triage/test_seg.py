"""DICOM SEG: round trip through highdicom, deterministic UIDs, dciodvfy-clean output."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from service.validate import dciodvfy
from tests.factory import make_dataset
from triage.dicom.read import read_radiograph
from triage.dicom.seg import (
    NOT_FOR_CLINICAL_USE,
    Algorithm,
    build_segmentation,
    seg_uids,
    source_header,
    write_segmentation,
)

RESEARCH = Algorithm(name="ptx-test", version="1.2.3", research_only=True)
CLINICAL = Algorithm(name="ptx-test", version="1.2.3", research_only=False)


def blob(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    rows, cols = shape
    mask[rows // 8 : rows // 2, cols // 10 : cols // 3] = True
    mask[rows // 8, cols // 3] = True  # a lone pixel on the edge must survive the round trip
    return mask


def test_round_trip_through_highdicom(tmp_path):
    source = make_dataset(rows=300, columns=200, PatientOrientation=["L", "F"])
    mask = blob((300, 200))
    path = write_segmentation(build_segmentation(source, mask, RESEARCH), tmp_path / "a.seg.dcm")
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[source.SOPInstanceUID], segment_numbers=[1]
    )
    assert pixels.shape == (1, 300, 200, 1)
    np.testing.assert_array_equal(pixels[0, :, :, 0].astype(bool), mask)
    assert seg.SegmentationType == "BINARY"
    assert int(seg.NumberOfFrames) == 1
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "36118008"
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("ptx-test", "1.2.3")
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert "ptx-triage" in [e.Manufacturer for e in seg.ContributingEquipmentSequence]
    assert list(seg.PatientOrientation) == ["L", "F"]
    assert seg.StudyInstanceUID == source.StudyInstanceUID


def test_uids_are_deterministic_and_differ_per_model(tmp_path):
    source = make_dataset(rows=64, columns=96)
    first = build_segmentation(source, blob((64, 96)), RESEARCH)
    second = build_segmentation(source, blob((64, 96)), RESEARCH)
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (
        second.SOPInstanceUID,
        second.SeriesInstanceUID,
    )
    newer = Algorithm(name="ptx-test", version="1.2.4", research_only=True)
    assert seg_uids(source.SOPInstanceUID, newer) != seg_uids(source.SOPInstanceUID, RESEARCH)
    other = make_dataset(rows=64, columns=96)
    assert seg_uids(other.SOPInstanceUID, RESEARCH) != seg_uids(source.SOPInstanceUID, RESEARCH)
    for uid in seg_uids(source.SOPInstanceUID, RESEARCH):
        assert uid.startswith("2.25.") and len(uid) <= 64


def test_research_packages_say_not_for_clinical_use():
    source = make_dataset(rows=64, columns=96)
    assert (
        NOT_FOR_CLINICAL_USE
        in build_segmentation(source, blob((64, 96)), RESEARCH).SeriesDescription
    )
    assert (
        NOT_FOR_CLINICAL_USE
        not in build_segmentation(source, blob((64, 96)), CLINICAL).SeriesDescription
    )


def test_refuses_wrong_shape_and_empty_masks():
    source = make_dataset(rows=64, columns=96)
    with pytest.raises(ValueError, match="differs"):
        build_segmentation(source, np.ones((96, 64), dtype=bool), RESEARCH)
    with pytest.raises(ValueError, match="empty"):
        build_segmentation(source, np.zeros((64, 96), dtype=bool), RESEARCH)


def test_source_header_mends_what_real_files_break():
    source = make_dataset(
        rows=64, columns=96, PixelSpacing=[0, 0], PatientAge="62", PatientBirthDate=None
    )
    header = source_header(source)
    assert "PixelData" not in header and "PixelData" in source
    assert "PixelSpacing" not in header
    assert header.PatientAge == "062Y"
    assert header.PatientBirthDate == ""


def _sources(shared_data_dir):
    yield (
        "factory CR MONOCHROME1",
        make_dataset(
            rows=600,
            columns=500,
            modality="CR",
            sop_class="CR",
            photometric="MONOCHROME1",
            PatientOrientation=["L", "F"],
            PixelSpacing=[0.2, 0.2],
        ),
    )
    yield (
        "factory DX without orientation",
        make_dataset(
            rows=512, columns=512, ImagerPixelSpacing=[0.15, 0.15], PatientOrientation=None
        ),
    )
    yield (
        "factory SC with modality CR",
        make_dataset(rows=256, columns=300, modality="CR", sop_class="SC"),
    )
    for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm"):
        yield name, read_radiograph(get_testdata_file(name))[0]
    if shared_data_dir is not None:
        for path in sorted((shared_data_dir / "real").glob("*.dcm")):
            yield path.name, pydicom.dcmread(path)


@pytest.mark.peers
def test_every_seg_passes_dciodvfy(tmp_path, require_tool, request):
    require_tool("dciodvfy")
    try:
        shared = request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        shared = None
    checked = 0
    for name, source in _sources(shared):
        mask = blob((int(source.Rows), int(source.Columns)))
        path = write_segmentation(
            build_segmentation(source, mask, RESEARCH), tmp_path / f"{checked}.seg.dcm"
        )
        verdict = dciodvfy(path)
        assert verdict.errors == (), f"{name}: {verdict.errors}"
        checked += 1
    assert checked >= 5
