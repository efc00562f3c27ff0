"""Operating-point search on small synthetic held-out sets, checked against the cascade."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from training.metrics import dice, empty_baseline, mean_dice, sensitivity_specificity
from training.thresholds import search_operating_point
from triage.postprocess import OperatingPoint, low_res_mask

SIZE = 32


@dataclass(frozen=True, kw_only=True)
class HeldOut:
    labels: np.ndarray
    probabilities: np.ndarray
    maps: np.ndarray
    masks: np.ndarray

    def search(self, **kwargs: float) -> tuple[OperatingPoint, dict[str, float]]:
        return search_operating_point(
            labels=self.labels,
            probabilities=self.probabilities,
            maps=self.maps,
            masks=self.masks,
            **kwargs,
        )


def held_out(*, weak_positive: bool = False) -> HeldOut:
    """Twelve 32x32 images: five positives, six clean negatives, one with a spurious blob.

    A positive's map is 0.95 on its true 8x8 block and 0.5 on a one-pixel ring around it,
    so the pixel threshold matters. The spurious blob (3x3 at 0.95) sits on a negative the
    classifier wrongly flags, so only ``min_area`` or ``min_component`` can remove it.
    """
    rng = np.random.default_rng(0)
    maps = rng.uniform(0.0, 0.2, size=(12, SIZE, SIZE)).astype(np.float32)
    masks = np.zeros((12, SIZE, SIZE), dtype=bool)
    labels = np.zeros(12, dtype=bool)
    probabilities = np.array(
        [0.9, 0.8, 0.95, 0.7, 0.85, 0.1, 0.2, 0.15, 0.3, 0.05, 0.25, 0.8], dtype=np.float32
    )
    for i, (r, c) in enumerate([(4, 4), (10, 18), (20, 6), (14, 14), (22, 22)]):
        labels[i] = True
        maps[i, r - 1 : r + 9, c - 1 : c + 9] = 0.5
        maps[i, r : r + 8, c : c + 8] = 0.95
        masks[i, r : r + 8, c : c + 8] = True
    maps[11, 5:8, 20:23] = 0.95  # the spurious blob
    if weak_positive:
        probabilities[0] = 0.05  # below every classifier threshold of the search
    return HeldOut(labels=labels, probabilities=probabilities, maps=maps, masks=masks)


def cascade_masks(data: HeldOut, op: OperatingPoint) -> list[np.ndarray]:
    """Masks on the network grid as the cascade makes them: classifier gate, then thresholds."""
    return [
        low_res_mask(prob_map, op)
        if probability >= op.classifier_threshold
        else np.zeros(prob_map.shape, dtype=bool)
        for probability, prob_map in zip(data.probabilities, data.maps, strict=True)
    ]


def test_the_held_out_set_needs_the_area_or_component_gate() -> None:
    data = held_out()
    loose = OperatingPoint(
        classifier_threshold=0.5, top_score=0.9, min_area=1, pixel_threshold=0.6, min_component=0
    )
    assert cascade_masks(data, loose)[11].any()
    assert mean_dice(list(data.masks), cascade_masks(data, loose)) == pytest.approx(11 / 12)


def test_search_score_equals_the_cascade_recomputed() -> None:
    data = held_out()
    op, summary = data.search()
    predicted = cascade_masks(data, op)
    assert summary["mean_dice"] == pytest.approx(mean_dice(list(data.masks), predicted), abs=1e-4)
    assert summary["mean_dice"] == pytest.approx(1.0)
    assert summary["images"] == 12
    assert summary["empty_baseline"] == pytest.approx(round(empty_baseline(data.labels), 4))
    assert summary["mean_dice"] > summary["empty_baseline"]
    # The spurious blob is gone and the ring around each lesion is left out.
    assert not predicted[11].any()
    assert op.pixel_threshold >= 0.5
    assert op.min_area > 9 or op.min_component > 9


def test_search_summary_sensitivity_matches_the_cascade_decisions() -> None:
    data = held_out()
    op, summary = data.search()
    positives = [mask.any() for mask in cascade_masks(data, op)]
    sensitivity, specificity = sensitivity_specificity(data.labels, positives)
    assert summary["sensitivity"] == pytest.approx(sensitivity, abs=1e-4)
    assert summary["specificity"] == pytest.approx(specificity, abs=1e-4)


def test_search_with_a_missed_positive_still_matches_the_cascade() -> None:
    data = held_out(weak_positive=True)
    op, summary = data.search()
    predicted = cascade_masks(data, op)
    assert summary["mean_dice"] == pytest.approx(mean_dice(list(data.masks), predicted), abs=1e-4)
    assert summary["mean_dice"] == pytest.approx(11 / 12, abs=1e-4)  # image 0 cannot be found
    assert summary["mean_dice"] > summary["empty_baseline"]
    assert summary["sensitivity"] == pytest.approx(4 / 5)


def test_search_dice_is_the_mean_of_per_image_dice() -> None:
    data = held_out()
    op, summary = data.search()
    per_image = [dice(t, p) for t, p in zip(data.masks, cascade_masks(data, op), strict=True)]
    assert summary["mean_dice"] == pytest.approx(float(np.mean(per_image)), abs=1e-4)


def test_min_sensitivity_that_no_point_reaches_raises() -> None:
    data = held_out(weak_positive=True)  # at most 4 of 5 positives reach the U-Net
    with pytest.raises(ValueError, match=r"no operating point reaches sensitivity 0\.9"):
        data.search(min_sensitivity=0.9)


def test_min_sensitivity_that_can_be_met_is_respected() -> None:
    data = held_out(weak_positive=True)
    op, summary = data.search(min_sensitivity=0.8)
    assert summary["sensitivity"] >= 0.8
    positives = [mask.any() for mask in cascade_masks(data, op)]
    assert sensitivity_specificity(data.labels, positives)[0] >= 0.8


def scattered_held_out() -> HeldOut:
    """Two negatives whose false alarms only ``min_component`` removes, and a tiny positive.

    Images 10 and 11 have 256 isolated pixels at 0.95 each (more than any ``min_area``) and a
    classifier probability of 0.8; image 4's lesion is a 2x2 block that the same filter
    drops. Removing the two false alarms outscores keeping the one small lesion.
    """
    data = held_out()
    maps, masks = data.maps.copy(), data.masks.copy()
    probabilities = data.probabilities.copy()
    rng = np.random.default_rng(1)
    for i in (10, 11):
        maps[i] = rng.uniform(0.0, 0.2, size=(SIZE, SIZE))
        maps[i, ::2, ::2] = 0.95
        probabilities[i] = 0.8
    maps[4] = rng.uniform(0.0, 0.2, size=(SIZE, SIZE))
    maps[4, 20:22, 20:22] = 0.95
    masks[4] = maps[4] > 0.5
    return HeldOut(labels=data.labels, probabilities=probabilities, maps=maps, masks=masks)


def test_summary_counts_an_image_positive_only_when_a_region_survives() -> None:
    data = scattered_held_out()
    op, summary = data.search()
    predicted = cascade_masks(data, op)
    assert summary["mean_dice"] == pytest.approx(mean_dice(list(data.masks), predicted), abs=1e-4)
    assert summary["mean_dice"] == pytest.approx(11 / 12, abs=1e-4)
    assert op.min_component > 4  # the filter that removes both false alarms and the lesion
    assert not predicted[4].any()
    positives = [mask.any() for mask in predicted]
    sensitivity, specificity = sensitivity_specificity(data.labels, positives)
    assert (sensitivity, specificity) == (4 / 5, 1.0)
    assert summary["sensitivity"] == pytest.approx(sensitivity, abs=1e-4)
    assert summary["specificity"] == pytest.approx(specificity, abs=1e-4)


def test_min_sensitivity_holds_for_the_cascade_decisions() -> None:
    data = scattered_held_out()
    op, summary = data.search(min_sensitivity=1.0)
    predicted = cascade_masks(data, op)
    positives = [mask.any() for mask in predicted]
    assert sensitivity_specificity(data.labels, positives) == (1.0, 5 / 7)
    assert summary["sensitivity"] == 1.0
    assert summary["specificity"] == pytest.approx(5 / 7, abs=1e-4)
    # Keeping the 4-pixel lesion means keeping the false alarms too.
    assert op.min_component <= 4
    assert summary["mean_dice"] == pytest.approx(mean_dice(list(data.masks), predicted), abs=1e-4)
    assert summary["mean_dice"] == pytest.approx(10 / 12, abs=1e-4)


def test_a_near_tie_goes_to_the_point_that_segments_fewer_images() -> None:
    """The weak positive (p=0.05) is worth 1/12 of Dice; a tolerance above that drops it."""
    data = held_out(weak_positive=True)
    strict, strict_summary = data.search(tolerance=0.0)
    lenient, lenient_summary = data.search(tolerance=0.1)
    assert lenient_summary["segmented"] < strict_summary["segmented"]
    assert lenient.classifier_threshold > strict.classifier_threshold
    assert lenient_summary["mean_dice"] >= strict_summary["best_mean_dice"] - 0.1
    assert strict_summary["mean_dice"] == strict_summary["best_mean_dice"]
