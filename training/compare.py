"""The dissertation's claim, tested on out-of-fold predictions.

Three ways of using the networks, each at its own best operating point on the same
images: (i) a U-Net trained on all images, alone; (ii) the positives-only U-Net, alone;
(iii) the classifier gating the positives-only U-Net (the cascade). Compute per image is
the measured per-image time of each network; the cascade pays the U-Net only for the
share of images its classifier passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.metrics import empty_baseline
from training.thresholds import search_operating_point


def compare(
    *,
    labels: np.ndarray,
    probabilities: np.ndarray,
    maps: np.ndarray,
    baseline_maps: np.ndarray | None,
    masks: np.ndarray,
    milliseconds: dict[str, float],
    min_sensitivity: float = 0.0,
) -> dict[str, Any]:
    """Score the designs; the last row is the cascade, whose operating point is returned.

    Parameters
    ----------
    labels, probabilities
        Truth and out-of-fold classifier probability per image.
    maps, baseline_maps
        Out-of-fold probability maps of the positives-only U-Net and of the all-images
        U-Net (``None`` when no baseline was trained).
    masks
        True masks on the segmenter grid.
    milliseconds
        Measured inference time per image of ``classifier``, ``segmenter`` and
        ``baseline``.
    min_sensitivity
        Every design's operating point must reach this image-level sensitivity.

    Raises
    ------
    ValueError
        If the cascade cannot reach ``min_sensitivity`` at any operating point.
    """
    ones = np.ones(len(labels), dtype=np.float32)
    rows = []
    alone = [("positives-only U-Net alone", maps, milliseconds["segmenter"])]
    if baseline_maps is not None:
        alone.insert(0, ("all-images U-Net alone", baseline_maps, milliseconds["baseline"]))
    for name, design_maps, cost in alone:
        try:
            _, summary = search_operating_point(
                labels=labels,
                probabilities=ones,
                maps=design_maps,
                masks=masks,
                min_sensitivity=min_sensitivity,
                classifier_thresholds=(0.5,),
            )
        except ValueError as exc:
            rows.append({"design": name, "error": str(exc), "ms_per_image": cost})
            continue
        rows.append({"design": name, **summary, "ms_per_image": round(cost, 2)})
    op, summary = search_operating_point(
        labels=labels,
        probabilities=probabilities,
        maps=maps,
        masks=masks,
        min_sensitivity=min_sensitivity,
    )
    cost = milliseconds["classifier"] + summary["segmented"] * milliseconds["segmenter"]
    rows.append(
        {
            "design": "cascade (classifier + positives-only U-Net)",
            **summary,
            "ms_per_image": round(cost, 2),
        }
    )
    for row in rows:
        row.setdefault("empty_baseline", round(empty_baseline(labels), 4))
    return {"rows": rows, "operating_point": op}
