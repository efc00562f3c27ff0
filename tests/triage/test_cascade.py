"""The cascade: gating, batching, masks at source resolution, modes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.packages import make_package
from triage.cascade import Cascade, resolve_device
from triage.dicom.read import Radiograph
from triage.postprocess import OperatingPoint


def radiograph(rows: int, cols: int, seed: int = 0, orientation=("L", "F")) -> Radiograph:
    rng = np.random.default_rng(seed)
    return Radiograph(
        pixels=rng.random((rows, cols), dtype=np.float32),
        spacing_mm=(0.2, 0.2),
        photometric="MONOCHROME2",
        bits_stored=12,
        modality="DX",
        view_position="PA",
        patient_orientation=orientation,
        sop_instance_uid=f"1.2.3.{seed}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        series_instance_uid="1.2.3.100",
        study_instance_uid="1.2.3.200",
    )


class SegmenterSpy:
    """Wraps the U-Net and records how many images each forward pass received."""

    def __init__(self, net):
        self.net = net
        self.batches: list[int] = []

    def __call__(self, x):
        self.batches.append(int(x.shape[0]))
        return self.net(x)


def test_negative_never_reaches_the_unet(tmp_path):
    package = make_package(tmp_path, classifier_bias=-6.0, segmenter_bias=6.0)
    cascade = Cascade(package, device="cpu", batch_size=4)
    spy = SegmenterSpy(cascade.segmenter)
    cascade.segmenter = spy
    results = cascade.run([radiograph(300, 200, seed=i) for i in range(6)])
    assert spy.batches == []
    assert cascade.segmented_images == 0
    assert all(not r.segmented and not r.positive and r.mask is None for r in results)
    assert all(r.probability < 0.01 and r.priority == 0.0 for r in results)


def test_flagged_images_are_segmented_at_source_size(tmp_path):
    package = make_package(tmp_path, classifier_bias=6.0, segmenter_bias=6.0)
    cascade = Cascade(package, device="cpu", batch_size=4)
    spy = SegmenterSpy(cascade.segmenter)
    cascade.segmenter = spy
    shapes = [(300, 200), (128, 256), (517, 389)]
    results = cascade.run([radiograph(r, c, seed=i) for i, (r, c) in enumerate(shapes)])
    # Two passes (plain and flipped) of all three images in one batch.
    assert spy.batches == [3, 3]
    for (rows, cols), result in zip(shapes, results, strict=True):
        assert result.positive and result.segmented
        assert result.mask.shape == (rows, cols)
        assert result.mask.all()
        assert result.area_mm2 == pytest.approx(rows * cols * 0.04)
        assert result.laterality == "B"
        assert 50.0 < result.priority <= 100.0


def test_gate_follows_the_classifier_threshold(tmp_path):
    # Classifier output sigmoid(0) = 0.5 for every image: a threshold above it gates all.
    package = make_package(
        tmp_path,
        classifier_bias=0.0,
        segmenter_bias=6.0,
        operating_point=OperatingPoint(classifier_threshold=0.6),
    )
    cascade = Cascade(package, device="cpu")
    assert not any(r.segmented for r in cascade.run([radiograph(100, 100)]))
    lower = dataclasses.replace(package, operating_point=OperatingPoint(classifier_threshold=0.4))
    cascade = Cascade(lower, device="cpu")
    assert all(r.segmented for r in cascade.run([radiograph(100, 100)]))


def test_unet_finding_nothing_makes_a_negative(tmp_path):
    package = make_package(tmp_path, classifier_bias=6.0, segmenter_bias=-6.0)
    result = Cascade(package, device="cpu").run([radiograph(200, 200)])[0]
    assert result.segmented and not result.positive and result.mask is None


def test_segment_all_mode_runs_the_unet_on_every_image(tmp_path):
    package = make_package(tmp_path, classifier_bias=-6.0, segmenter_bias=6.0)
    cascade = Cascade(package, device="cpu", mode="segment_all")
    results = cascade.run([radiograph(120, 90, seed=i) for i in range(5)])
    assert cascade.segmented_images == 5
    assert all(r.positive for r in results)


def test_results_keep_input_order_across_batches(tmp_path):
    package = make_package(tmp_path)
    cascade = Cascade(package, device="cpu", batch_size=2)
    images = [radiograph(80 + i, 90, seed=i) for i in range(5)]
    results = cascade.run(images)
    assert [r.sop_instance_uid for r in results] == [r.sop_instance_uid for r in images]
    assert cascade.run([]) == []


def test_bad_settings_are_refused(tmp_path):
    package = make_package(tmp_path)
    with pytest.raises(ValueError, match="mode"):
        Cascade(package, mode="unet-only")
    with pytest.raises(ValueError, match="batch_size"):
        Cascade(package, batch_size=0)
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
