"""Metrics of the SIIM-ACR task: Dice, baseline, AUC, sensitivity and specificity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from training.metrics import dice, empty_baseline, mean_dice, roc_auc, sensitivity_specificity


def _mask(*boxes: tuple[int, int, int, int], shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1 in boxes:
        mask[r0:r1, c0:c1] = True
    return mask


EMPTY = _mask()


def test_dice_of_empty_on_empty_is_one() -> None:
    assert dice(EMPTY, EMPTY) == 1.0


def test_dice_of_empty_against_non_empty_is_zero_both_ways() -> None:
    assert dice(EMPTY, _mask((0, 2, 0, 2))) == 0.0
    assert dice(_mask((0, 2, 0, 2)), EMPTY) == 0.0


def test_dice_of_a_known_overlap() -> None:
    truth = _mask((0, 4, 0, 5))  # 20 pixels
    prediction = _mask((2, 6, 0, 5))  # 20 pixels, 10 shared
    assert dice(truth, prediction) == pytest.approx(2 * 10 / 40)
    assert dice(truth, truth) == 1.0
    assert dice(truth, _mask((6, 10, 6, 10))) == 0.0


def test_dice_accepts_non_boolean_masks() -> None:
    truth = _mask((0, 4, 0, 5)).astype(np.uint8) * 255
    prediction = _mask((2, 6, 0, 5)).astype(np.float32)
    assert dice(truth, prediction) == pytest.approx(0.5)


def test_mean_dice_averages_per_image() -> None:
    truths = [EMPTY, _mask((0, 4, 0, 5)), _mask((0, 2, 0, 2))]
    predictions = [EMPTY, _mask((2, 6, 0, 5)), EMPTY]
    assert mean_dice(truths, predictions) == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_mean_dice_refuses_mismatched_or_empty_inputs() -> None:
    with pytest.raises(ValueError, match=r"2 truths but 1 predictions"):
        mean_dice([EMPTY, EMPTY], [EMPTY])
    with pytest.raises(ValueError, match=r"no images"):
        mean_dice([], [])


def test_empty_baseline_is_the_share_of_negatives() -> None:
    labels = [True, False, False, True, False]
    assert empty_baseline(labels) == pytest.approx(0.6)
    # It is the mean Dice of predicting every image empty.
    truths = [_mask((0, 3, 0, 3)) if label else EMPTY for label in labels]
    assert mean_dice(truths, [EMPTY] * len(labels)) == pytest.approx(empty_baseline(labels))
    assert math.isnan(empty_baseline([]))


def test_roc_auc_of_a_hand_computed_example() -> None:
    # Positives 0.9, 0.4; negatives 0.5, 0.1. Pairs (pos > neg): 0.9>0.5, 0.9>0.1, 0.4>0.1
    # and 0.4<0.5, so 3 of 4.
    assert roc_auc([True, True, False, False], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)


def test_roc_auc_counts_ties_as_one_half() -> None:
    # Pairs: (0.8, 0.8) tie = 0.5; (0.8, 0.2) = 1; (0.2, 0.8) = 0; (0.2, 0.2) tie = 0.5.
    assert roc_auc([True, True, False, False], [0.8, 0.2, 0.8, 0.2]) == pytest.approx(0.5)
    assert roc_auc([True, False, False], [0.5, 0.5, 0.5]) == pytest.approx(0.5)


def test_roc_auc_perfect_and_inverted() -> None:
    labels = [False, False, True, True]
    assert roc_auc(labels, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc(labels, [0.4, 0.3, 0.2, 0.1]) == 0.0


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_matches_brute_force_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    labels = rng.random(n) < 0.4
    labels[:2] = [True, False]  # both classes present
    # Few distinct values, so many ties, shuffled so the order of input does not help.
    scores = rng.integers(0, 6, size=n) / 5.0 + labels * rng.integers(0, 2, size=n) * 0.2
    assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores), abs=1e-12)


def test_roc_auc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match=r"both positive and negative"):
        roc_auc([True, True], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"both positive and negative"):
        roc_auc([False, False], [0.1, 0.2])


def test_sensitivity_specificity() -> None:
    labels = [True, True, True, True, False, False, False]
    predicted = [True, True, True, False, True, False, False]
    sensitivity, specificity = sensitivity_specificity(labels, predicted)
    assert sensitivity == pytest.approx(3 / 4)
    assert specificity == pytest.approx(2 / 3)


def test_sensitivity_specificity_is_nan_where_a_class_is_absent() -> None:
    sensitivity, specificity = sensitivity_specificity([False, False], [True, False])
    assert math.isnan(sensitivity)
    assert specificity == 0.5
    sensitivity, specificity = sensitivity_specificity([True], [True])
    assert sensitivity == 1.0
    assert math.isnan(specificity)
