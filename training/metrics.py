"""Metrics of the SIIM-ACR pneumothorax task, as pure functions over arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dice(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Dice of two boolean masks, with empty prediction on empty truth scored 1."""
    truth = truth.astype(bool, copy=False)
    prediction = prediction.astype(bool, copy=False)
    total = int(np.count_nonzero(truth)) + int(np.count_nonzero(prediction))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(truth & prediction)) / total


def mean_dice(truths: Sequence[np.ndarray], predictions: Sequence[np.ndarray]) -> float:
    """The competition metric: mean over images of :func:`dice`."""
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} truths but {len(predictions)} predictions")
    if not truths:
        raise ValueError("no images to score")
    return float(np.mean([dice(t, p) for t, p in zip(truths, predictions, strict=True)]))


def empty_baseline(labels: Sequence[bool]) -> float:
    """Mean Dice of predicting every image empty: the share of negative images."""
    labels = np.asarray(labels, dtype=bool)
    return float(np.mean(~labels)) if labels.size else float("nan")


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the ROC curve by the rank-sum formula (ties count one half).

    Raises
    ------
    ValueError
        If the labels hold only one class.
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both positive and negative images")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties.
    _unique, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def sensitivity_specificity(
    labels: Sequence[bool], predicted: Sequence[bool]
) -> tuple[float, float]:
    """Sensitivity and specificity of binary decisions (NaN where a class is absent)."""
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    tp = int(np.count_nonzero(labels & predicted))
    tn = int(np.count_nonzero(~labels & ~predicted))
    pos, neg = int(labels.sum()), int((~labels).sum())
    return (tp / pos if pos else float("nan"), tn / neg if neg else float("nan"))
