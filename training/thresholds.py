"""Operating-point search on held-out predictions.

Every combination of classifier threshold, top-score threshold, minimum area, pixel
threshold and minimum component size is scored with the competition metric (mean Dice,
empty on empty = 1) as the cascade would apply it, optionally subject to a minimum
sensitivity. The search is exhaustive but cheap: Dice per image is computed once per
(pixel threshold, minimum component) pair and the gates are applied as array masks.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from training.metrics import dice, empty_baseline
from triage.postprocess import OperatingPoint, low_res_mask

CLASSIFIER_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TOP_SCORES = (0.5, 0.6, 0.7, 0.8, 0.9)
#: Pixel counts on a 256×256 grid; scaled to the segmenter's grid by area.
MIN_AREAS = (1, 10, 25, 50, 100, 200)
PIXEL_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
MIN_COMPONENTS = (0, 10, 30, 60)
#: Mean Dice the search gives up, at most, to send fewer images to the U-Net.
DICE_TOLERANCE = 0.002


def search_operating_point(
    *,
    labels: np.ndarray,
    probabilities: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray,
    min_sensitivity: float = 0.0,
    classifier_thresholds: Sequence[float] = CLASSIFIER_THRESHOLDS,
    tolerance: float = DICE_TOLERANCE,
) -> tuple[OperatingPoint, dict[str, Any]]:
    """Find the operating point with the best mean Dice on held-out images.

    Among the points within ``tolerance`` of the best mean Dice, the one that sends the
    fewest images to the U-Net wins (then the higher Dice): a threshold that buys a
    thousandth of Dice by segmenting most negatives is a poor trade for a triage service,
    and it sits where the classifier's calibration is least stable.

    Parameters
    ----------
    labels, probabilities
        Truth (positive or not) and classifier probability per image.
    maps, masks
        U-Net probability maps and true masks on the network grid, (N, rows, cols).
    min_sensitivity
        Reject operating points whose image-level sensitivity is below this.
    tolerance
        Mean Dice given up, at most, for less compute (0: the best Dice, full stop).

    Returns
    -------
    tuple
        The operating point and a summary (its score, sensitivity, specificity, baseline,
        the share of images the U-Net sees).

    Raises
    ------
    ValueError
        If no operating point reaches ``min_sensitivity``.
    """
    labels = np.asarray(labels, dtype=bool)
    truth_empty = ~masks.reshape(len(masks), -1).any(axis=1)
    scale = max(1.0, maps.shape[1] * maps.shape[2] / (256 * 256))
    min_areas = sorted({max(1, round(a * scale)) for a in MIN_AREAS})
    min_components = sorted({round(c * scale) for c in MIN_COMPONENTS})
    top_counts = {t: (maps > t).reshape(len(maps), -1).sum(axis=1) for t in TOP_SCORES}
    passed = {ct: float(np.mean(probabilities >= ct)) for ct in classifier_thresholds}
    candidates: list[tuple[float, dict[str, Any]]] = []
    for pixel_threshold, min_component in itertools.product(PIXEL_THRESHOLDS, min_components):
        op = OperatingPoint(
            top_score=0.5, min_area=0, pixel_threshold=pixel_threshold, min_component=min_component
        )
        segmented = [low_res_mask(p, op) for p in maps]
        seg_dice = np.array([dice(m, s) for m, s in zip(masks, segmented, strict=True)])
        # The cascade calls an image positive only when a region survives the component
        # filter, so sensitivity and specificity count those, not the images that pass the gates.
        seg_found = np.array([s.any() for s in segmented], dtype=bool)
        for ct, ts, ma in itertools.product(classifier_thresholds, TOP_SCORES, min_areas):
            predicted = (probabilities >= ct) & (top_counts[ts] >= ma)
            positive = predicted & seg_found
            sensitivity = float(positive[labels].mean()) if labels.any() else 1.0
            if sensitivity < min_sensitivity:
                continue
            scores = np.where(predicted, seg_dice, truth_empty.astype(float))
            candidates.append(
                (
                    float(scores.mean()),
                    {
                        "classifier_threshold": ct,
                        "top_score": ts,
                        "min_area": ma,
                        "pixel_threshold": pixel_threshold,
                        "min_component": min_component,
                        "dice_on_positives": float(scores[labels].mean()) if labels.any() else None,
                        "sensitivity": sensitivity,
                        "specificity": float((~positive[~labels]).mean())
                        if (~labels).any()
                        else 1.0,
                        "segmented": passed[ct],
                    },
                )
            )
    if not candidates:
        raise ValueError(f"no operating point reaches sensitivity {min_sensitivity}")
    top = max(score for score, _ in candidates)
    near = [c for c in candidates if c[0] >= top - tolerance]
    score, chosen = min(near, key=lambda c: (c[1]["segmented"], -c[0]))
    op = OperatingPoint(**{k: chosen[k] for k in OperatingPoint.__dataclass_fields__})
    summary = {
        "images": len(labels),
        "mean_dice": round(score, 4),
        "best_mean_dice": round(top, 4),
        "empty_baseline": round(empty_baseline(labels), 4),
        "dice_on_positives": _round(chosen["dice_on_positives"]),
        "sensitivity": round(chosen["sensitivity"], 4),
        "specificity": round(chosen["specificity"], 4),
        "segmented": round(chosen["segmented"], 4),
        "min_sensitivity": min_sensitivity,
    }
    return op, summary


def apply_operating_point(
    op: OperatingPoint, *, probabilities: np.ndarray, maps: np.ndarray, masks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: whether the cascade calls it positive at ``op``, and its Dice.

    The same gates as :meth:`triage.cascade.Cascade.run` on the network grid.
    """
    positive = np.zeros(len(maps), dtype=bool)
    dices = np.zeros(len(maps))
    for i, (probability, prob_map, truth) in enumerate(
        zip(probabilities, maps, masks, strict=True)
    ):
        found = np.zeros(truth.shape, dtype=bool)
        if probability >= op.classifier_threshold:
            found = low_res_mask(prob_map, op)
        positive[i] = found.any()
        dices[i] = dice(truth, found)
    return positive, dices


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
