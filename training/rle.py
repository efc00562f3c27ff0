"""The SIIM-ACR competition's run-length code.

Pixels are numbered down each column, then left to right (index = column × rows + row).
Each pair is (gap since the end of the previous run, run length); the first gap counts
from pixel 0. ``-1`` means an empty mask. Several rows for one image are separate lesions
and are OR-ed together (:func:`merge`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

EMPTY = "-1"


class RLEError(ValueError):
    """The run-length text is malformed or does not fit the image."""


def decode(text: str, shape: tuple[int, int] = (1024, 1024)) -> np.ndarray:
    """Decode one run-length string into a boolean mask of ``shape`` (rows, cols).

    Raises
    ------
    RLEError
        If the text has an odd count of numbers, a negative value, or runs past the image.
    """
    text = text.strip()
    rows, cols = shape
    flat = np.zeros(rows * cols, dtype=bool)
    if text in (EMPTY, ""):
        return flat.reshape(cols, rows).T
    try:
        numbers = [int(v) for v in text.split()]
    except ValueError as exc:
        raise RLEError(f"run-length text holds a non-integer: {exc}") from exc
    if len(numbers) % 2:
        raise RLEError(f"run-length text has {len(numbers)} numbers; pairs are needed")
    position = 0
    for gap, length in zip(numbers[0::2], numbers[1::2], strict=True):
        if gap < 0 or length < 0:
            raise RLEError(f"negative gap or length ({gap}, {length})")
        start = position + gap
        end = start + length
        if end > flat.size:
            raise RLEError(f"a run ends at pixel {end}, past the {flat.size} pixels of {shape}")
        flat[start:end] = True
        position = end
    # Column-major numbering: fill as (cols, rows), then transpose to image orientation.
    return flat.reshape(cols, rows).T


def encode(mask: np.ndarray) -> str:
    """Encode a boolean mask (rows, cols) as the competition's run-length text."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    if not flat.any():
        return EMPTY
    padded = np.concatenate([[False], flat, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = changes[0::2], changes[1::2]
    previous_ends = np.concatenate([[0], ends[:-1]])
    pairs = np.stack([starts - previous_ends, ends - starts], axis=1).reshape(-1)
    return " ".join(str(int(v)) for v in pairs)


def merge(texts: Iterable[str], shape: tuple[int, int] = (1024, 1024)) -> np.ndarray:
    """OR together the masks of several rows for one image."""
    mask = np.zeros(shape, dtype=bool)
    for text in texts:
        mask |= decode(text, shape)
    return mask
