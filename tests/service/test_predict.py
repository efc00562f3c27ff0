"""`triage predict` end to end: files in, results.json and SEGs out, bad inputs reported."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from service.cli import main
from service.predict import find_inputs
from service.validate import dciodvfy
from tests.factory import make_dataset, write
from tests.packages import make_package

KEYS = {
    "path",
    "sop_instance_uid",
    "study_instance_uid",
    "status",
    "reason",
    "probability",
    "positive",
    "area_mm2",
    "laterality",
    "priority",
    "seg_path",
}


@pytest.fixture
def positive_package(tmp_path):
    return make_package(tmp_path / "pkg", classifier_bias=6.0, segmenter_bias=6.0)


def _inputs(folder):
    folder.mkdir()
    good = write(make_dataset(rows=300, columns=280, PixelSpacing=[0.2, 0.2]), folder / "good.dcm")
    mono1 = write(
        make_dataset(
            rows=260, columns=300, modality="CR", sop_class="CR", photometric="MONOCHROME1"
        ),
        folder / "mono1.dcm",
    )
    (folder / "notes.txt").write_text("not an image")  # passed over in a folder walk
    junk = folder / "junk.dcm"
    junk.write_bytes(b"this is not DICOM at all" * 20)
    truncated = folder / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:-5000])
    rgb = make_dataset(rows=300, columns=300)
    rgb.SamplesPerPixel, rgb.PhotometricInterpretation, rgb.PlanarConfiguration = 3, "RGB", 0
    rgb.BitsAllocated, rgb.BitsStored, rgb.HighBit = 8, 8, 7
    rgb.PixelData = np.zeros((300, 300, 3), np.uint8).tobytes()
    write(rgb, folder / "rgb.dcm")
    no_pixels = make_dataset(rows=300, columns=300)
    del no_pixels.PixelData
    write(no_pixels, folder / "nopixels.dcm")
    lateral = write(make_dataset(rows=300, columns=300, ViewPosition="LL"), folder / "lat.dcm")
    return {"good": good, "mono1": mono1, "lateral": lateral}


def test_predict_writes_results_and_segs(tmp_path, positive_package, capsys):
    inputs = _inputs(tmp_path / "in")
    tibia = get_testdata_file("RG3_J2KR.dcm")
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(tmp_path / "in"),
            tibia,
            "--out",
            str(out),
            "--model",
            str(positive_package.path),
            "--no-progress",
            "--overlays",
        ]
    )
    assert code == 1  # junk and truncated files are errors
    results = {
        r["path"].rsplit("/", 1)[-1]: r for r in json.loads((out / "results.json").read_text())
    }
    assert "notes.txt" not in results
    assert all(set(r) >= KEYS for r in results.values())
    assert results["junk.dcm"]["status"] == "error"
    assert results["truncated.dcm"]["status"] == "error"
    assert "pixel data" in results["truncated.dcm"]["reason"].lower()
    assert results["rgb.dcm"]["status"] == "skipped"
    assert results["nopixels.dcm"]["status"] == "skipped"
    assert results["lat.dcm"]["status"] == "skipped" and "lateral" in results["lat.dcm"]["reason"]
    assert results["RG3_J2KR.dcm"]["status"] == "skipped"
    assert "EXTREMITY" in results["RG3_J2KR.dcm"]["reason"]
    for name in ("good.dcm", "mono1.dcm"):
        row = results[name]
        assert row["status"] == "analysed" and row["positive"] is True
        seg = pydicom.dcmread(row["seg_path"])
        source = pydicom.dcmread(inputs[name.removesuffix(".dcm")])
        assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)
        assert (
            seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
            == source.SOPInstanceUID
        )
        assert (out / f"{source.SOPInstanceUID}.overlay.png").is_file()
    assert results["good.dcm"]["area_mm2"] == pytest.approx(300 * 280 * 0.04, rel=0.01)
    assert results["mono1.dcm"]["area_mm2"] is None  # no pixel spacing in that file
    printed = capsys.readouterr().out
    assert "2 analysed (2 positive)" in printed and "2 errors" in printed


def test_predict_twice_gives_the_same_seg_uids(tmp_path, positive_package):
    _inputs(tmp_path / "in")
    uids = []
    for run in ("a", "b"):
        main(
            [
                "predict",
                str(tmp_path / "in" / "good.dcm"),
                "--out",
                str(tmp_path / run),
                "--model",
                str(positive_package.path),
                "--no-progress",
            ]
        )
        row = json.loads((tmp_path / run / "results.json").read_text())[0]
        seg = pydicom.dcmread(row["seg_path"])
        uids.append((seg.SOPInstanceUID, seg.SeriesInstanceUID))
    assert uids[0] == uids[1]


def test_clean_run_exits_zero_and_negatives_have_no_seg(tmp_path, capsys):
    package = make_package(tmp_path / "pkg", classifier_bias=-6.0)
    write(make_dataset(rows=300, columns=300), tmp_path / "a.dcm")
    code = main(
        [
            "predict",
            str(tmp_path / "a.dcm"),
            "--out",
            str(tmp_path / "out"),
            "--model",
            str(package.path),
            "--no-progress",
            "--json",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["positive"] is False and rows[0]["seg_path"] is None
    assert rows[0]["priority"] == 0.0


def test_missing_model_package_is_a_clear_error(tmp_path, capsys):
    write(make_dataset(rows=300, columns=300), tmp_path / "a.dcm")
    code = main(
        [
            "predict",
            str(tmp_path / "a.dcm"),
            "--out",
            str(tmp_path / "out"),
            "--model",
            str(tmp_path / "nowhere"),
        ]
    )
    assert code == 2
    assert "not a folder" in capsys.readouterr().err


def test_find_inputs_refuses_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_inputs([tmp_path / "absent.dcm"])


@pytest.mark.peers
def test_predict_on_real_chest_images(tmp_path, positive_package, shared_data, require_tool):
    require_tool("dciodvfy")
    files = [get_testdata_file(n) for n in ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm")]
    files += [str(p) for p in sorted((shared_data / "real").glob("*.dcm"))]
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                *files,
                "--out",
                str(out),
                "--model",
                str(positive_package.path),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in rows] == ["analysed"] * len(files)
    for row in rows:
        seg = pydicom.dcmread(row["seg_path"])
        source = pydicom.dcmread(row["path"], stop_before_pixels=True)
        assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)
        assert dciodvfy(row["seg_path"]).errors == ()


@pytest.mark.slow
@pytest.mark.peers
def test_default_package_on_phantom_studies(tmp_path, require_tool):
    """Every syntax and bit depth in, SEGs of source size out, valid, on the right side."""
    from training.phantoms import write_studies
    from triage.models.package import default_package_path

    require_tool("dciodvfy")
    images = write_studies(
        tmp_path / "in", studies=8, seed=31337, prevalence=1.0, sizes=(512, 1400)
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(tmp_path / "in"),
                "--out",
                str(out),
                "--no-progress",
                "--model",
                str(default_package_path()),
            ]
        )
        == 0
    )
    rows = {r["sop_instance_uid"]: r for r in json.loads((out / "results.json").read_text())}
    frontal = [i for i in images if i.mask_path is not None]
    found = 0
    for image in images:
        row = rows[image.sop_instance_uid]
        if image.mask_path is None:
            assert row["status"] == "skipped"
            continue
        assert row["status"] == "analysed"
        if not row["positive"]:
            continue
        found += 1
        seg = pydicom.dcmread(row["seg_path"])
        assert (seg.Rows, seg.Columns) == image.phantom.mask.shape
        assert row["laterality"] == image.phantom.side
        assert dciodvfy(row["seg_path"]).errors == ()
    assert found >= 0.7 * len(frontal), f"{found} of {len(frontal)} positives found"
