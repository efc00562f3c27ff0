"""The competition run-length code against the real SIIM-ACR rows in ../shared/data/labels."""

from __future__ import annotations

import csv
from collections import defaultdict

import numpy as np
import pytest

from training.rle import EMPTY, RLEError, decode, encode, merge


def read_rows(shared_data) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = defaultdict(list)
    with open(shared_data / "labels" / "siim-train-rle-excerpt.csv", newline="") as handle:
        for row in csv.DictReader(handle, skipinitialspace=True):
            row = {k.strip(): v.strip() for k, v in row.items()}
            rows[row["ImageId"]].append(row["EncodedPixels"])
    return rows


def test_real_rows_round_trip_exactly(shared_data):
    rows = read_rows(shared_data)
    assert len(rows) == 301
    positives = 0
    for texts in rows.values():
        for text in texts:
            mask = decode(text)
            assert encode(mask) == text
        positives += any(t != EMPTY for t in texts)
    assert positives == 150


def test_several_rows_for_one_image_are_or_ed(shared_data):
    rows = read_rows(shared_data)
    multi = next(texts for texts in rows.values() if len(texts) > 1)
    merged = merge(multi)
    for text in multi:
        assert (merged | decode(text) == merged).all()
    assert merged.sum() == np.logical_or.reduce([decode(t) for t in multi]).sum()


def test_the_known_negative_is_empty(shared_data):
    rows = read_rows(shared_data)
    texts = rows["1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819"]
    assert texts == [EMPTY] and not merge(texts).any()


def test_column_major_order_and_the_last_pixel():
    mask = np.zeros((4, 3), dtype=bool)
    mask[1, 0] = True  # index 1 (column 0, row 1)
    mask[0, 1] = True  # index 4 (column 1, row 0)
    mask[3, 2] = True  # index 11: the last pixel
    assert encode(mask) == "1 1 2 1 6 1"
    assert (decode("1 1 2 1 6 1", (4, 3)) == mask).all()


@pytest.mark.parametrize("text", ["1 2 3", "a b", "0 13", "-1 2"])
def test_malformed_text_is_refused(text):
    with pytest.raises(RLEError):
        decode(text, (4, 3))


def test_random_masks_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((37, 23)) < rng.uniform(0.01, 0.9)
        assert (decode(encode(mask), mask.shape) == mask).all()
