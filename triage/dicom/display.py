"""The DICOM grayscale display chain as array math (PS3.4 N.2.1.1).

Stored values go through the Modality LUT or rescale, then the first VOI LUT or window
(or the value range when the object has neither), ending as float32 in [0, 1].
"""

from __future__ import annotations

import logging
import struct

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi

from triage.dicom.values import finite_float, first_value

logger = logging.getLogger(__name__)


def to_display(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality then VOI transform, as float32 in [0, 1] with 1 the highest output value."""
    values = _modality(stored, ds)
    lut = ds.get("VOILUTSequence")
    if lut and "LUTDescriptor" in lut[0] and "LUTData" in lut[0]:
        pixels = _apply_voi_lut(values, ds)
        if pixels is not None:
            return pixels
    window = _first_window(ds)
    if window is not None:
        function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
        return _apply_window(values, *window, function=function)
    return _min_max(values)


def _modality(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality values; rescale runs in float32 because pydicom's would allocate float64."""
    if ds.get("ModalityLUTSequence"):
        return apply_modality_lut(stored, ds)
    slope = finite_float(ds.get("RescaleSlope"), default=1.0)
    intercept = finite_float(ds.get("RescaleIntercept"), default=0.0)
    if slope == 0.0:
        logger.warning("ignoring Rescale Slope 0, which would blank the image")
        slope = 1.0
    if slope == 1.0 and intercept == 0.0:
        return stored
    values = stored.astype(np.float32)
    values *= np.float32(slope)
    values += np.float32(intercept)
    return values


def _apply_voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Apply the first VOI LUT and normalise by its output range; None if it is unusable."""
    descriptor = ds.VOILUTSequence[0].LUTDescriptor
    entries, first = int(descriptor[0]) or 2**16, int(descriptor[1])
    # pydicom's apply_voi wants integers already inside the table, or it wraps around
    if values.dtype.kind == "f":
        values = np.rint(values)
    index = np.clip(values, first, first + entries - 1).astype(np.int32, copy=False)
    try:
        table = apply_voi(np.arange(first, first + entries, dtype=np.int32), ds)
        mapped = apply_voi(index, ds)
    except (NotImplementedError, ValueError, AttributeError, struct.error) as exc:
        logger.warning("ignoring unusable VOI LUT: %s", exc)
        return None
    low, high = float(table.min()), float(table.max())
    if high <= low:
        logger.warning("ignoring VOI LUT whose output is constant (%s)", low)
        return None
    pixels = mapped.astype(np.float32)
    pixels -= np.float32(low)
    pixels *= np.float32(1.0 / (high - low))
    return pixels


def _first_window(ds: Dataset) -> tuple[float, float] | None:
    """The first (center, width) pair, or None when absent or invalid."""
    center, width = first_value(ds.get("WindowCenter")), first_value(ds.get("WindowWidth"))
    if center is None or width is None:
        return None
    if width <= 0:
        logger.warning("ignoring window with width %s: a width must be positive", width)
        return None
    return center, width


def _apply_window(values: np.ndarray, center: float, width: float, *, function: str) -> np.ndarray:
    """Window to [0, 1] with the formulas of PS3.3 C.11.2.1.2 (LINEAR for unknown names)."""
    pixels = values.astype(np.float32, copy=values.dtype != np.float32)
    if function == "SIGMOID":
        pixels -= np.float32(center)
        pixels *= np.float32(-4.0 / width)
        np.exp(pixels, out=pixels)
        pixels += np.float32(1.0)
        return np.reciprocal(pixels, out=pixels)
    if function == "LINEAR_EXACT":
        pixels -= np.float32(center - width / 2)
        pixels *= np.float32(1.0 / width)
    elif width > 1:
        pixels -= np.float32(center - 0.5 - (width - 1) / 2)
        pixels *= np.float32(1.0 / (width - 1))
    else:
        return (pixels > np.float32(center - 0.5)).astype(np.float32)
    return np.clip(pixels, 0.0, 1.0, out=pixels)


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    pixels = values.astype(np.float32, copy=values.dtype != np.float32)
    if high <= low:
        pixels.fill(0.0)
        return pixels
    pixels -= np.float32(low)
    pixels *= np.float32(1.0 / (high - low))
    return np.clip(pixels, 0.0, 1.0, out=pixels)
