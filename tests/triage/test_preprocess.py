"""Preprocessing: normalisation settings, resizing without transposition, percentiles."""

from __future__ import annotations

import re

import numpy as np
import pytest

from triage.preprocess import Normalisation, normalise, prepare, resize, resize_mask


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"method": "zscore"}, ["'zscore'", "unknown", "percentile"]),
        ({"low": 50.0, "high": 50.0}, ["0 <= low < high <= 100", "50.0, 50.0"]),
        ({"low": 90.0, "high": 10.0}, ["0 <= low < high <= 100", "90.0, 10.0"]),
        ({"low": -1.0}, ["0 <= low < high <= 100", "-1.0"]),
        ({"high": 101.0}, ["0 <= low < high <= 100", "101.0"]),
    ],
)
def test_normalisation_rejects_bad_settings_naming_the_value(
    kwargs: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(ValueError) as info:
        Normalisation(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_normalisation_accepts_the_extremes_and_round_trips_json() -> None:
    settings = Normalisation(low=0.0, high=100.0)
    assert Normalisation.from_json(settings.to_json()) == settings
    assert Normalisation.from_json({}) == Normalisation()


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((300, 500), (64, 96)),
        ((40, 60), (128, 256)),
        ((300, 500), (300, 500)),
        ((30, 500), (64, 64)),
    ],
)
def test_resize_returns_the_requested_rows_and_cols_as_float32(
    shape: tuple[int, int], size: tuple[int, int]
) -> None:
    out = resize(np.random.default_rng(0).random(shape), size)
    assert out.shape == size
    assert out.dtype == np.float32


@pytest.mark.parametrize("size", [(64, 64), (100, 60), (600, 1000)])
def test_resize_never_transposes_a_top_right_marker_stays_top_right(size: tuple[int, int]) -> None:
    image = np.zeros((300, 500), dtype=np.float32)
    image[10:40, 440:490] = 1.0  # top-right corner of a wide image
    out = resize(image, size)
    row, col = np.unravel_index(np.argmax(out), out.shape)
    assert row < size[0] * 0.2
    assert col > size[1] * 0.8
    # The other three corners stay dark.
    assert out[-size[0] // 4 :, :].max() < 0.05
    assert out[:, : size[1] // 2].max() < 0.05


def test_resize_shrinking_averages_boxes() -> None:
    image = np.zeros((4, 4), dtype=np.float32)
    image[:2, :2] = 1.0
    image[2:, 2:] = 0.5
    np.testing.assert_allclose(resize(image, (2, 2)), [[1.0, 0.0], [0.0, 0.5]])


def test_normalise_maps_the_percentiles_to_zero_and_one() -> None:
    image = np.arange(101, dtype=np.float32).reshape(1, 101)  # percentile p == value p
    out = normalise(image, Normalisation(low=10.0, high=90.0))
    assert out.dtype == np.float32
    assert out.min() == 0.0
    assert out.max() == 1.0
    np.testing.assert_allclose(out[0, [0, 10, 50, 90, 100]], [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_normalise_handles_integer_images() -> None:
    image = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    out = normalise(image, Normalisation(low=0.0, high=100.0))
    np.testing.assert_allclose(out, [[0.0, 0.25], [0.5, 1.0]], atol=1e-6)


def test_normalise_of_a_constant_image_is_zeros() -> None:
    out = normalise(np.full((16, 24), 7.5, dtype=np.float32), Normalisation())
    assert out.shape == (16, 24)
    assert out.dtype == np.float32
    assert not out.any()


def test_prepare_returns_size_in_unit_range() -> None:
    image = np.random.default_rng(1).normal(1000.0, 300.0, size=(300, 500))
    out = prepare(image, size=(64, 96), normalisation=Normalisation())
    assert out.shape == (64, 96)
    assert out.dtype == np.float32
    assert out.min() == 0.0
    assert out.max() == 1.0


@pytest.mark.parametrize("shape", [(2, 64, 64), (64,), (1, 1, 64, 64)])
def test_prepare_rejects_images_that_are_not_2d(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"2-D.*" + re.escape(str(shape))):
        prepare(np.zeros(shape), size=(64, 64), normalisation=Normalisation())


@pytest.mark.parametrize("size", [(32, 48), (300, 500), (600, 1000)])
def test_resize_mask_keeps_a_block_in_place(size: tuple[int, int]) -> None:
    mask = np.zeros((300, 500), dtype=bool)
    mask[150:300, 0:125] = True  # bottom half, left quarter
    out = resize_mask(mask, size)
    assert out.dtype == bool
    assert out.shape == size
    rows, cols = size
    expected = np.zeros(size, dtype=bool)
    expected[rows // 2 :, : cols // 4] = True
    # Only the boundary may differ by a row or column.
    assert np.count_nonzero(out != expected) <= rows + cols
    assert out[rows * 3 // 4, cols // 8]
    assert not out[rows // 4, cols // 8]
    assert not out[rows * 3 // 4, cols // 2]
