"""Post-processing: from probability maps to masks, areas, laterality and priority.

Follows the winning SIIM-ACR recipe: an image is empty unless at least ``min_area`` pixels
exceed ``top_score``; otherwise its mask is the pixels above ``pixel_threshold``, less the
connected components smaller than ``min_component``. Pixel counts refer to the network's
input grid. Pure functions over arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

#: Share of a frontal chest radiograph's area taken by one hemithorax (an estimate for a
#: typical PA film; it turns an area fraction into "% of the hemithorax").
HEMITHORAX_FRACTION = 0.25
#: Image-area fraction at which the size part of the priority saturates (about 40 % of a
#: hemithorax).
PRIORITY_FULL_SIZE = 0.4 * HEMITHORAX_FRACTION


def hemithorax_percent(area_fraction: float) -> float:
    """An image-area fraction as an estimated percentage of one hemithorax (at most 100)."""
    return min(100.0, 100.0 * max(area_fraction, 0.0) / HEMITHORAX_FRACTION)


@dataclass(frozen=True, kw_only=True)
class OperatingPoint:
    """Thresholds that turn network outputs into decisions.

    Raises
    ------
    ValueError
        If a probability is outside (0, 1) or a pixel count is negative.
    """

    classifier_threshold: float = 0.5
    top_score: float = 0.75
    min_area: int = 20
    pixel_threshold: float = 0.4
    min_component: int = 10

    def __post_init__(self) -> None:
        for name in ("classifier_threshold", "top_score", "pixel_threshold"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")
        for name in ("min_area", "min_component"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be a pixel count >= 0, got {value}")

    def to_json(self) -> dict[str, Any]:
        """Return the manifest form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OperatingPoint:
        """Read the manifest form; missing keys take their defaults."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("min_area", "min_component"):
            if key in known:
                known[key] = int(known[key])
        return cls(**{k: v for k, v in known.items()})


def low_res_mask(prob: np.ndarray, op: OperatingPoint) -> np.ndarray:
    """Apply the thresholds to a probability map on the network grid.

    Returns
    -------
    numpy.ndarray
        Boolean mask of the same shape; all False when the image is judged empty.
    """
    if int(np.count_nonzero(prob > op.top_score)) < max(op.min_area, 1):
        return np.zeros(prob.shape, dtype=bool)
    mask = prob > op.pixel_threshold
    if op.min_component > 1:
        labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        if count:
            sizes = np.bincount(labels.ravel())
            small = sizes < op.min_component
            small[0] = True
            mask = ~small[labels]
    return mask


def to_source(
    prob: np.ndarray, keep: np.ndarray, shape: tuple[int, int], threshold: float
) -> np.ndarray:
    """Resize a kept region to the source image grid with smooth edges.

    The probability map, zeroed outside the (slightly dilated) kept region, is upsampled
    bilinearly and thresholded again at full resolution, so outlines follow the network's
    output instead of the blocks of a nearest-neighbour upscale.
    """
    if not keep.any():
        return np.zeros(shape, dtype=bool)
    region = ndimage.binary_dilation(keep, iterations=1)
    masked = np.where(region, prob, 0.0).astype(np.float32)
    tensor = torch.from_numpy(masked)[None, None]
    full = F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)[0, 0]
    return (full > threshold).numpy()


def area_mm2(mask: np.ndarray, spacing_mm: tuple[float, float] | None) -> float | None:
    """Area of a full-resolution mask in mm², or None when the pixel spacing is unknown."""
    if spacing_mm is None:
        return None
    return float(np.count_nonzero(mask)) * float(spacing_mm[0]) * float(spacing_mm[1])


def laterality(mask: np.ndarray, patient_orientation: tuple[str, str] | None) -> str | None:
    """Patient side of a mask: ``"R"``, ``"L"``, ``"B"`` (both) or None when empty.

    The image row direction comes from PatientOrientation's first value; when absent, the
    radiographic convention (patient's left towards the image's right, ``L``) is assumed.
    """
    total = int(np.count_nonzero(mask))
    if total == 0:
        return None
    half = mask.shape[1] // 2
    left_share = np.count_nonzero(mask[:, :half]) / total
    row_direction = patient_orientation[0] if patient_orientation else "L"
    # Image-left is the patient's right when rows run towards the patient's left.
    image_left_side, image_right_side = ("L", "R") if "R" in row_direction[:1] else ("R", "L")
    if 0.2 <= left_share <= 0.8:
        return "B"
    return image_left_side if left_share > 0.5 else image_right_side


def priority(probability: float, area_fraction: float, positive: bool) -> float:
    """Worklist priority in [0, 100]: 0 for negatives, 50-100 for positives.

    Positives rank by the classifier probability weighted by the lesion's share of the
    image, so large and certain pneumothoraces are read first.
    """
    if not positive:
        return 0.0
    size = min(1.0, float(np.sqrt(max(area_fraction, 0.0) / PRIORITY_FULL_SIZE)))
    return round(50.0 + 50.0 * float(probability) * (0.3 + 0.7 * size), 2)
