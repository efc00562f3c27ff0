"""Overlay pictures: a radiograph with the pneumothorax outline drawn over it."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from triage.preprocess import resize

#: Outline colour (RGB): a saturated orange that reads on grey.
OUTLINE = (255, 120, 0)
FILL = (255, 150, 40)


def overlay_rgb(
    pixels: np.ndarray, mask: np.ndarray | None, *, max_size: int = 1024, fill_alpha: float = 0.18
) -> np.ndarray:
    """Render ``pixels`` (display sense, [0, 1]) as RGB uint8 with ``mask``'s outline.

    The picture is shrunk so its longer side is at most ``max_size``; the outline is two
    pixels wide on that grid and the region is lightly tinted.
    """
    rows, cols = pixels.shape
    scale = min(1.0, max_size / max(rows, cols))
    shape = (max(1, round(rows * scale)), max(1, round(cols * scale)))
    grey = np.clip(resize(pixels, shape), 0.0, 1.0)
    rgb = np.repeat((grey * 255.0).astype(np.uint8)[..., None], 3, axis=2)
    if mask is None or not mask.any():
        return rgb
    small = resize(mask.astype(np.float32), shape) >= 0.5
    inner = ndimage.binary_erosion(small, iterations=2)
    edge = small & ~inner
    tint = np.asarray(FILL, dtype=np.float32)
    rgb[small] = ((1 - fill_alpha) * rgb[small] + fill_alpha * tint).astype(np.uint8)
    rgb[edge] = OUTLINE
    return rgb
