"""The minimal phantom trainer end to end: a package that the cascade loads unchanged."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tests.packages import CLASSIFIER, SEGMENTER
from training.evaluate import evaluate_on_phantoms
from training.phantom_data import make_phantom_set
from training.train import QuickConfig, split, train_package, with_metrics
from triage.models.package import load_package
from triage.preprocess import Normalisation

TINY = replace(
    QuickConfig(),
    images=16,
    prevalence=0.5,
    classifier_epochs=1,
    segmenter_epochs=1,
    sizes=(512, 560),
    segmenter_crop=(64, 64),
    workers=1,
    classifier=CLASSIFIER,
    segmenter=SEGMENTER,
)


def test_phantom_set_is_deterministic_and_aligned():
    kwargs = dict(
        images=6,
        seed=3,
        prevalence=0.5,
        classifier_size=(64, 64),
        segmenter_size=(96, 96),
        normalisation=Normalisation(),
        sizes=(512, 560),
        workers=1,
    )
    first, second = make_phantom_set(**kwargs), make_phantom_set(**kwargs)
    assert first.digest() == second.digest()
    assert first.classifier_inputs.shape == (6, 64, 64)
    assert first.segmenter_inputs.shape == first.masks.shape == (6, 96, 96)
    assert np.array_equal(first.labels, first.masks.reshape(6, -1).any(axis=1))


def test_split_is_stratified_and_disjoint():
    labels = np.array([True] * 10 + [False] * 30)
    train, valid = split(labels, 0.2, seed=1)
    assert set(train).isdisjoint(valid) and len(train) + len(valid) == 40
    assert labels[valid].sum() == 2 and (~labels[valid]).sum() == 6


@pytest.mark.slow
def test_train_package_writes_a_loadable_honest_package(tmp_path):
    package = train_package(tmp_path / "pkg", TINY, command="test")
    loaded = load_package(tmp_path / "pkg")
    assert loaded.synthetic and loaded.training["dataset"] == "phantoms"
    assert loaded.training["images"] == 16
    assert loaded.training["data_hash"] == package.training["data_hash"]
    assert loaded.segmenter.input_size == (96, 96)
    assert len(loaded.metrics["classifier_history"]) == 1
    metrics = evaluate_on_phantoms(loaded.path, images=6, sizes=(512, 560), device="cpu")
    assert 0.0 <= metrics["mean_dice"] <= 1.0 and metrics["images"] == 6
    updated = with_metrics(loaded, metrics)
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["metrics"]["held_out"] == metrics == updated.metrics["held_out"]
