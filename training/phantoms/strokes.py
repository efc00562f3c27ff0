"""Thin structures drawn as blurred point clouds: vessels, pleural folds, tubes and wires.

A stroke is a polyline sampled every half pixel; each sample is splatted bilinearly onto the
working grid and the result blurred by a Gaussian as wide as the structure. Everything is
vectorised, so a few thousand segments cost a few milliseconds.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from training.phantoms.geometry import FloatArray, Frame

#: Spacing of the samples along a stroke, in working pixels.
STEP_PX = 0.5


def sample_segments(
    start: FloatArray, end: FloatArray, weight: FloatArray, *, scale: float
) -> tuple[FloatArray, FloatArray]:
    """Sample straight segments every :data:`STEP_PX` working pixels.

    Parameters
    ----------
    start, end
        ``(n, 2)`` chest-unit end points ``(x, y)``.
    weight
        ``(n,)`` brightness of each segment.
    scale
        Working pixels per chest unit.

    Returns
    -------
    points, weights
        ``(m, 2)`` sample points and their ``(m,)`` weights.
    """
    length_px = np.hypot(*(end - start).T) * scale
    counts = np.maximum(np.ceil(length_px / STEP_PX).astype(np.int64), 1)
    seg = np.repeat(np.arange(len(start)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    t = (np.arange(seg.size) - first + 0.5) / counts[seg]
    points = start[seg] + (end[seg] - start[seg]) * t[:, None]
    return points, weight[seg] * (length_px[seg] / counts[seg])


def splat(frame: Frame, points: FloatArray, weights: FloatArray) -> FloatArray:
    """Accumulate weighted chest-unit points bilinearly onto the working grid."""
    rows, cols = frame.shape
    r, c = frame.to_pixels(points[:, 0], points[:, 1])
    r0, c0 = np.floor(r), np.floor(c)
    fr, fc = r - r0, c - c0
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    rr = np.concatenate([r0, r0, r0 + 1, r0 + 1])
    cc = np.concatenate([c0, c0 + 1, c0, c0 + 1])
    share = np.concatenate([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc])
    keep = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
    flat = np.bincount(rr[keep] * cols + cc[keep], (share * np.tile(weights, 4))[keep], rows * cols)
    return flat.reshape(rows, cols).astype(np.float32)


def draw(frame: Frame, points: FloatArray, weights: FloatArray, *, width: float) -> FloatArray:
    """Draw sampled strokes as lines of peak ``weights`` and Gaussian ``width`` (chest units)."""
    sigma = max(width * frame.scale, 0.5)
    layer = splat(frame, points, weights)
    return ndimage.gaussian_filter(layer, sigma, truncate=3.0) * np.float32(
        math.sqrt(2.0 * math.pi) * sigma
    )


def polyline(
    points: FloatArray, weight: float | FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Turn an ``(n, 2)`` polyline into segment arrays for :func:`sample_segments`."""
    weights = np.broadcast_to(np.asarray(weight, dtype=np.float64), (len(points) - 1,))
    return points[:-1], points[1:], weights


def smooth_curve(
    rng: np.random.Generator,
    start: tuple[float, float],
    heading: float,
    *,
    length: float,
    bend: float,
    nodes: int = 64,
) -> FloatArray:
    """A random smooth curve: a walk whose heading drifts by at most ``bend`` radians per unit."""
    step = length / (nodes - 1)
    turn = np.cumsum(rng.normal(0.0, 1.0, nodes - 1))
    turn = ndimage.gaussian_filter1d(turn, nodes / 10.0)
    turn = turn / max(float(np.max(np.abs(turn))), 1e-6) * bend * length
    headings = heading + turn
    steps = np.stack([np.cos(headings), np.sin(headings)], axis=1) * step
    return np.vstack([np.asarray(start)[None, :], start + np.cumsum(steps, axis=0)])
