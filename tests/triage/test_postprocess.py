"""Post-processing: operating points, masks on both grids, area, laterality and priority."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from triage.postprocess import (
    OperatingPoint,
    area_mm2,
    laterality,
    low_res_mask,
    priority,
    to_source,
)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"classifier_threshold": 0.0}, "classifier_threshold"),
        ({"classifier_threshold": 1.0}, "classifier_threshold"),
        ({"top_score": 1.5}, "top_score"),
        ({"pixel_threshold": -0.1}, "pixel_threshold"),
        ({"pixel_threshold": float("nan")}, "pixel_threshold"),
        ({"min_area": -1}, "min_area"),
        ({"min_component": -5}, "min_component"),
    ],
)
def test_operating_point_rejects_bad_values_naming_the_field(
    kwargs: dict[str, float], name: str
) -> None:
    with pytest.raises(ValueError, match=name) as info:
        OperatingPoint(**kwargs)
    assert str(next(iter(kwargs.values()))) in str(info.value)


def test_operating_point_json_round_trip() -> None:
    op = OperatingPoint(
        classifier_threshold=0.3,
        top_score=0.8,
        min_area=50,
        pixel_threshold=0.35,
        min_component=30,
    )
    data = op.to_json()
    assert data == {
        "classifier_threshold": 0.3,
        "top_score": 0.8,
        "min_area": 50,
        "pixel_threshold": 0.35,
        "min_component": 30,
    }
    assert OperatingPoint.from_json(data) == op


def test_operating_point_from_json_fills_defaults_and_casts_counts() -> None:
    op = OperatingPoint.from_json({"min_area": 25.0, "unrelated": "ignored"})
    assert op == OperatingPoint(min_area=25)
    assert isinstance(op.min_area, int)


def _blob_map(shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    prob = np.full(shape, 0.05, dtype=np.float32)
    prob[10:20, 10:20] = 0.9  # 100 pixels, a big component
    return prob


def test_low_res_mask_is_empty_when_too_few_pixels_exceed_top_score() -> None:
    prob = _blob_map()
    op = OperatingPoint(top_score=0.75, min_area=101, pixel_threshold=0.4, min_component=0)
    mask = low_res_mask(prob, op)
    assert mask.shape == prob.shape
    assert mask.dtype == bool
    assert not mask.any()
    # One pixel fewer in min_area and the same image is kept.
    kept = low_res_mask(prob, OperatingPoint(top_score=0.75, min_area=100, min_component=0))
    assert np.count_nonzero(kept) == 100


def test_low_res_mask_with_min_area_zero_still_needs_one_pixel_above_top_score() -> None:
    prob = np.full((32, 32), 0.6, dtype=np.float32)
    assert not low_res_mask(prob, OperatingPoint(top_score=0.7, min_area=0)).any()


def test_low_res_mask_drops_small_components_and_keeps_big_ones() -> None:
    prob = _blob_map()
    prob[40:43, 50:53] = 0.5  # 9 pixels above pixel_threshold, none above top_score
    prob[55, 5] = 0.95  # a lone pixel
    op = OperatingPoint(top_score=0.75, min_area=20, pixel_threshold=0.4, min_component=10)
    mask = low_res_mask(prob, op)
    expected = np.zeros_like(mask)
    expected[10:20, 10:20] = True
    np.testing.assert_array_equal(mask, expected)
    # Without component filtering the small ones survive: the mask is the plain threshold.
    unfiltered = low_res_mask(prob, OperatingPoint(top_score=0.75, min_area=20, min_component=0))
    np.testing.assert_array_equal(unfiltered, prob > 0.4)


def test_low_res_mask_counts_diagonal_neighbours_as_one_component() -> None:
    prob = np.full((32, 32), 0.05, dtype=np.float32)
    idx = np.arange(4, 26)
    prob[idx, idx] = 0.9  # a diagonal line of 22 pixels
    op = OperatingPoint(top_score=0.75, min_area=20, pixel_threshold=0.4, min_component=20)
    assert np.count_nonzero(low_res_mask(prob, op)) == 22


@pytest.mark.parametrize("shape", [(300, 500), (512, 512), (40, 30)])
def test_to_source_has_the_source_shape_and_puts_the_region_in_proportion(
    shape: tuple[int, int],
) -> None:
    prob = np.full((64, 64), 0.05, dtype=np.float32)
    prob[8:24, 40:56] = 0.9  # top right
    prob[40:56, 8:24] = 0.9  # bottom left, not kept
    keep = np.zeros((64, 64), dtype=bool)
    keep[8:24, 40:56] = True
    full = to_source(prob, keep, shape, threshold=0.4)
    assert full.shape == shape
    assert full.dtype == bool
    rows, cols = (index + 0.5 for index in np.nonzero(full))  # pixel centres
    scale_r, scale_c = shape[0] / 64, shape[1] / 64
    assert rows.mean() == pytest.approx(16 * scale_r, abs=scale_r)
    assert cols.mean() == pytest.approx(48 * scale_c, abs=scale_c)
    assert rows.min() > (8 - 1) * scale_r and rows.max() < (24 + 1) * scale_r
    assert cols.min() > (40 - 1) * scale_c and cols.max() < (56 + 1) * scale_c
    # The area fraction is preserved up to the edge of one network pixel.
    assert np.count_nonzero(full) / full.size == pytest.approx(256 / 64**2, rel=0.25)


def test_to_source_of_an_empty_keep_is_all_false() -> None:
    prob = np.full((64, 64), 0.9, dtype=np.float32)
    full = to_source(prob, np.zeros((64, 64), dtype=bool), (300, 500), threshold=0.4)
    assert full.shape == (300, 500)
    assert full.dtype == bool
    assert not full.any()


def test_area_mm2_uses_the_pixel_spacing() -> None:
    mask = np.zeros((100, 200), dtype=bool)
    mask[:10, :20] = True
    assert area_mm2(mask, (0.5, 0.2)) == pytest.approx(200 * 0.1)
    assert area_mm2(mask, None) is None
    assert area_mm2(np.zeros((4, 4), dtype=bool), (1.0, 1.0)) == 0.0


def _mask_on(side: str, shape: tuple[int, int] = (100, 200)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    if side in ("left", "both"):
        mask[20:60, 10:60] = True
    if side in ("right", "both"):
        mask[20:60, 140:190] = True
    return mask


@pytest.mark.parametrize(
    ("side", "orientation", "expected"),
    [
        ("left", ("L", "F"), "R"),  # standard PA: image-left is the patient's right
        ("right", ("L", "F"), "L"),
        ("left", ("R", "F"), "L"),  # flipped image
        ("right", ("R", "F"), "R"),
        ("left", None, "R"),  # convention as ("L", "F")
        ("right", None, "L"),
        ("both", ("L", "F"), "B"),
        ("both", None, "B"),
    ],
)
def test_laterality(side: str, orientation: tuple[str, str] | None, expected: str) -> None:
    assert laterality(_mask_on(side), orientation) == expected


def test_laterality_of_an_empty_mask_is_none() -> None:
    assert laterality(np.zeros((100, 200), dtype=bool), ("L", "F")) is None
    assert laterality(np.zeros((100, 200), dtype=bool), None) is None


def test_laterality_ignores_a_small_spill_over_the_midline() -> None:
    mask = _mask_on("left")
    mask[20:25, 100:110] = True  # 50 of 2050 pixels on the other side
    assert laterality(mask, ("L", "F")) == "R"


def test_priority_is_zero_for_negatives_whatever_the_inputs() -> None:
    assert priority(0.99, 0.5, positive=False) == 0.0
    assert priority(0.0, 0.0, positive=False) == 0.0


PROBABILITIES = (0.0, 0.1, 0.5, 0.9, 1.0)
FRACTIONS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.3, 1.0)


def test_priority_of_positives_lies_between_50_and_100() -> None:
    values = [priority(p, a, positive=True) for p in PROBABILITIES for a in FRACTIONS]
    assert min(values) == 50.0  # probability 0
    assert max(values) == 100.0  # certain and large
    assert all(50.0 <= v <= 100.0 for v in values)


def test_priority_ranks_larger_and_more_certain_higher() -> None:
    assert priority(0.9, 0.05, positive=True) > priority(0.9, 0.01, positive=True)
    assert priority(0.9, 0.05, positive=True) > priority(0.6, 0.05, positive=True)
    # Any positive outranks any negative.
    assert priority(0.01, 0.0, positive=True) > priority(1.0, 1.0, positive=False)


def test_priority_is_monotonic_in_probability_and_area() -> None:
    for a in FRACTIONS:
        row = [priority(p, a, positive=True) for p in PROBABILITIES]
        assert row == sorted(row)
    for p in PROBABILITIES:
        column = [priority(p, a, positive=True) for a in FRACTIONS]
        assert column == sorted(column)
    for (p1, a1), (p2, a2) in itertools.combinations(
        itertools.product(PROBABILITIES, FRACTIONS), 2
    ):
        first, second = priority(p1, a1, positive=True), priority(p2, a2, positive=True)
        if p1 <= p2 and a1 <= a2:
            assert first <= second
        # Strictly higher when more certain, or larger below saturation.
        if (p1 < p2 and a1 <= a2) or (0 < p1 == p2 and a1 < a2 <= 0.1):
            assert first < second
