"""The SIIM PNG reader on phantoms written in that layout, bad files included."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.datasets import SiimPngDataset
from training.phantoms import write_siim_png


def test_reads_images_and_thresholded_masks(tmp_path):
    ids = write_siim_png(tmp_path, images=6, seed=2, prevalence=0.5)
    dataset = SiimPngDataset(root=tmp_path)
    samples = list(dataset)
    assert [s.image_id for s in samples] == sorted(ids)
    for sample in samples:
        assert sample.pixels.shape == sample.mask.shape == (256, 256)
        assert sample.pixels.min() >= 0.0 and sample.pixels.max() <= 1.0
        stored = np.asarray(Image.open(tmp_path / "masks" / f"{sample.image_id}.png"))
        assert (sample.mask == (stored > 127)).all()
    assert any(s.positive for s in samples) and not all(s.positive for s in samples)
    assert dataset.skipped == []


def test_bad_files_are_skipped_and_named(tmp_path):
    ids = write_siim_png(tmp_path, images=3, seed=2)
    (tmp_path / "masks" / f"{ids[0]}.png").unlink()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "masks" / f"{ids[1]}.png")
    (tmp_path / "train" / "broken.png").write_bytes(b"not a png")
    dataset = SiimPngDataset(root=tmp_path)
    assert [s.image_id for s in dataset] == [ids[2]]
    reasons = " ".join(f"{path} {reason}" for path, reason in dataset.skipped)
    assert ids[0] in reasons and "file missing" in reasons
    assert "mask is (10, 10)" in reasons
    assert "broken.png" in reasons


def test_wrong_layout_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="SIIM PNG layout"):
        SiimPngDataset(root=tmp_path)


def test_dicom_seg_pairs_from_our_own_predictions(tmp_path):
    import json

    from service.cli import main
    from tests.packages import make_package
    from training.datasets import DicomSegDataset
    from training.phantoms import write_studies

    package = make_package(tmp_path / "pkg", classifier_bias=6.0, segmenter_bias=6.0)
    images = write_studies(tmp_path / "data", studies=2, seed=8, prevalence=1.0, sizes=(512, 600))
    main(
        [
            "predict",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "data" / "segs"),
            "--model",
            str(package.path),
            "--no-progress",
        ]
    )
    rows = json.loads((tmp_path / "data" / "segs" / "results.json").read_text())
    with_seg = {r["sop_instance_uid"] for r in rows if r["seg_path"]}
    (tmp_path / "data" / "junk.dcm").write_bytes(b"junk")
    dataset = DicomSegDataset(root=tmp_path / "data")
    samples = {s.image_id: s for s in dataset}
    assert set(samples) == with_seg and with_seg
    by_uid = {i.sop_instance_uid: i for i in images}
    for uid, sample in samples.items():
        assert sample.mask.shape == by_uid[uid].phantom.mask.shape
        assert sample.mask.all()  # the forced-positive package outlines everything
    assert any("junk.dcm" in path for path, _ in dataset.skipped)
    everything = DicomSegDataset(root=tmp_path / "data", images_without_seg_are_negative=True)
    # Every stored image comes back, the ones without a SEG as negatives.
    all_samples = {s.image_id: s for s in everything}
    assert set(all_samples) == {i.sop_instance_uid for i in images}
    assert all(not all_samples[uid].positive for uid in set(all_samples) - with_seg)


def test_siim_dicom_reader_on_real_and_phantom_files(tmp_path, shared_data):
    import shutil

    import pydicom

    from training.datasets import SiimDicomDataset
    from training.phantoms import write_studies
    from training.rle import encode

    folder = tmp_path / "dicom"
    folder.mkdir()
    real = shared_data / "real" / "siim-cr-negative.dcm"
    real_id = str(pydicom.dcmread(real, stop_before_pixels=True).SOPInstanceUID)
    shutil.copy(real, folder / f"{real_id}.dcm")
    images = write_studies(
        tmp_path / "ph",
        studies=2,
        seed=3,
        prevalence=1.0,
        sizes=(512, 512),
        syntaxes=["1.2.840.10008.1.2.1"],
    )
    frontal = [i for i in images if i.mask_path is not None]
    lines = ["ImageId, EncodedPixels", f"{real_id}, -1", "1.2.3.404, -1"]
    for image in frontal:
        shutil.copy(image.path, folder / f"{image.sop_instance_uid}.dcm")
        mask = image.phantom.mask
        top, bottom = mask.copy(), mask.copy()
        top[mask.shape[0] // 2 :] = False  # two rows for one image: OR-ed
        bottom[: mask.shape[0] // 2] = False
        for part in (top, bottom):
            if part.any():
                lines.append(f" {image.sop_instance_uid}, {encode(part)}")
    labels = tmp_path / "train-rle.csv"
    labels.write_text("\n".join(lines) + "\n")
    dataset = SiimDicomDataset(root=folder, labels=labels)
    samples = {s.image_id: s for s in dataset}
    assert set(samples) == {real_id} | {i.sop_instance_uid for i in frontal}
    assert not samples[real_id].positive and samples[real_id].pixels.shape == (1024, 1024)
    for image in frontal:
        assert (samples[image.sop_instance_uid].mask == image.phantom.mask).all()
    assert dataset.skipped == [("1.2.3.404", "named in the label CSV, but no such .dcm file")]


def test_evaluate_command_scores_a_dataset(tmp_path, capsys):
    import json

    from service.cli import main

    write_siim_png(tmp_path / "png", images=12, seed=21, prevalence=0.5)
    (tmp_path / "png" / "masks" / "extra.png").write_bytes(b"")
    (tmp_path / "png" / "train" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "png" / "masks" / "broken.png").write_bytes(b"not a png")
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                "siim-png",
                "--data",
                str(tmp_path / "png"),
                "--out",
                str(tmp_path / "out"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert printed == saved and saved["images"] == 12
    report = (tmp_path / "out" / "report.html").read_text()
    assert "broken.png" in report and "roc.png" in report  # the skipped file is named
    assert (tmp_path / "out" / "example-1.png").is_file()
    assert saved["mean_dice"] >= saved["empty_baseline"]  # the bundled package helps here
    from triage.models.package import default_package_path

    positional = ["evaluate", str(default_package_path()), str(tmp_path / "png")]
    assert main([*positional, "--dataset", "siim-png", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 12
    assert main(["evaluate", "--dataset", "dicom-seg"]) == 2
    assert "needs --data" in capsys.readouterr().err
