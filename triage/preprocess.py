"""Preprocessing shared by inference and training: resize and normalise.

One implementation for both sides, so a model sees at inference exactly what it saw in
training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

NORMALISATION_METHODS = ("percentile",)


@dataclass(frozen=True, kw_only=True)
class Normalisation:
    """Intensity normalisation applied after resizing.

    ``percentile``: map the ``low`` and ``high`` percentiles of the resized image to 0 and 1
    and clip to [0, 1]. Robust to exposure, window and bit depth differences.

    Raises
    ------
    ValueError
        If the method is unknown or the percentiles are not ``0 <= low < high <= 100``.
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.0

    def __post_init__(self) -> None:
        if self.method not in NORMALISATION_METHODS:
            raise ValueError(
                f"normalisation method {self.method!r} is unknown; use one of "
                f"{NORMALISATION_METHODS}"
            )
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(
                f"percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}"
            )

    def to_json(self) -> dict[str, Any]:
        """Return the manifest form."""
        return {"method": self.method, "low": self.low, "high": self.high}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Normalisation:
        """Read the manifest form."""
        return cls(
            method=str(data.get("method", "percentile")),
            low=float(data.get("low", 1.0)),
            high=float(data.get("high", 99.0)),
        )


def resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Shrink (box average) or enlarge (bilinear) a 2-D image to ``size`` (rows, cols)."""
    if pixels.shape == tuple(size):
        return pixels.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None, None]
    shrinking = pixels.shape[0] >= size[0] and pixels.shape[1] >= size[1]
    if shrinking:
        out = F.interpolate(tensor, size=size, mode="area")
    else:
        out = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


def normalise(pixels: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """Apply ``normalisation`` to an image; returns float32 in [0, 1]."""
    low, high = np.percentile(pixels, [normalisation.low, normalisation.high])
    scale = float(high - low)
    if scale <= 1e-6:
        return np.zeros_like(pixels, dtype=np.float32)
    out = (pixels - np.float32(low)) / np.float32(scale)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def prepare(
    pixels: np.ndarray, *, size: tuple[int, int], normalisation: Normalisation
) -> np.ndarray:
    """Turn a radiograph's display pixels into a network input of ``size``.

    Parameters
    ----------
    pixels
        2-D float image in display sense (1 = bright), any rows×cols.
    size
        Network input (rows, cols).
    normalisation
        How to scale intensities.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``size`` in [0, 1].
    """
    if pixels.ndim != 2:
        raise ValueError(f"pixels must be 2-D, got shape {pixels.shape}")
    return normalise(resize(pixels, size), normalisation)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask by area averaging and a 0.5 threshold (training targets)."""
    return resize(mask.astype(np.float32), size) >= 0.5
