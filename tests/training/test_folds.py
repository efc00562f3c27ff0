"""Folds: no patient in two folds, positives balanced, saved and read back."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from training.folds import load_folds, make_folds, save_folds


def dataset(seed: int = 0):
    rng = np.random.default_rng(seed)
    ids, patients, labels = [], [], []
    for patient in range(300):
        for image in range(int(rng.integers(1, 5))):
            ids.append(f"img{patient}-{image}")
            patients.append(f"p{patient}")
            labels.append(bool(rng.random() < 0.25))
    return ids, patients, labels


def test_no_patient_is_in_two_folds_and_positives_are_balanced(tmp_path):
    ids, patients, labels = dataset()
    items = make_folds(ids, patients, labels, folds=5, seed=1)
    folds_of = defaultdict(set)
    for item in items:
        folds_of[item.patient_id].add(item.fold)
    assert all(len(f) == 1 for f in folds_of.values())
    per_fold = np.bincount([i.fold for i in items if i.positive], minlength=5)
    sizes = np.bincount([i.fold for i in items], minlength=5)
    assert per_fold.max() - per_fold.min() <= 4, per_fold
    assert sizes.max() / sizes.min() < 1.3, sizes
    assert load_folds(save_folds(items, tmp_path / "folds.csv")) == items


def test_same_seed_same_folds_other_seed_other_folds():
    ids, patients, labels = dataset()
    first = make_folds(ids, patients, labels, seed=3)
    assert first == make_folds(ids, patients, labels, seed=3)
    assert first != make_folds(ids, patients, labels, seed=4)


def test_too_few_patients_is_refused():
    with pytest.raises(ValueError, match="patients cannot fill"):
        make_folds(["a", "b"], ["p", "p"], [True, False], folds=2)
