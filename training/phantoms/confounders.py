"""Look-alikes of a pleural line: skin folds, drains, catheters and ECG leads.

A skin fold is a long thin line roughly parallel to the chest wall with an edge of denser
skin beside it; unlike a pleural line it crosses the lung edge and lung markings continue
on both sides. Tubes and wires are bright, sharply bounded and often leave the lung.
"""

from __future__ import annotations

import math

import numpy as np

from training.phantoms.geometry import Anatomy, FloatArray, Frame
from training.phantoms.strokes import draw, polyline, sample_segments, smooth_curve


def _outline(lung, angles: FloatArray, scale: FloatArray) -> FloatArray:
    """Points on a lung's superellipse outline, scaled about its centre, as ``(x, y)``."""
    cos, sin = np.cos(angles), np.sin(angles)
    exponent = 2.0 / lung.power
    du = lung.half_width * np.sign(cos) * np.abs(cos) ** exponent
    dy = np.where(sin < 0, lung.top, lung.bottom) * np.sign(sin) * np.abs(sin) ** exponent
    u = lung.center[0] + scale * du
    return np.stack([lung.sign * u, lung.center[1] + scale * dy], axis=1)


def skin_fold(rng: np.random.Generator, frame: Frame, anatomy: Anatomy, side: str) -> FloatArray:
    """A skin fold over one hemithorax, partly inside and partly outside the lung."""
    lung = anatomy.lung(side)
    first = rng.uniform(-75.0, 10.0)
    angles = np.radians(np.linspace(first, first + rng.uniform(35.0, 80.0), 160))
    scale = np.linspace(rng.uniform(0.8, 0.94), rng.uniform(0.97, 1.1), angles.size)
    if rng.random() < 0.5:
        scale = scale[::-1]
    scale = scale + 0.015 * np.sin(np.linspace(0.0, rng.uniform(2.0, 6.0), angles.size))
    width = rng.uniform(0.0012, 0.002)
    fade = np.sin(np.linspace(0.0, math.pi, angles.size - 1)) ** 0.5
    line = _outline(lung, angles, scale)
    layer = draw(frame, *_samples(frame, [line], rng.uniform(0.06, 0.14) * fade), width=width)
    offsets = np.linspace(0.0, rng.uniform(0.012, 0.025), 6)[1:] / lung.half_width
    edge = [_outline(lung, angles, scale + offset) for offset in offsets]
    return layer + draw(frame, *_samples(frame, edge, 0.018 * fade), width=0.004)


def _samples(
    frame: Frame, curves: list[FloatArray], weight: float | FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Samples of several polylines sharing one weight (per segment or scalar)."""
    parts = [sample_segments(*polyline(curve, weight), scale=frame.scale) for curve in curves]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _tube_walls(curve: FloatArray, width: float) -> tuple[FloatArray, FloatArray]:
    """The two walls of a tube of ``width`` chest units following ``curve``."""
    tangent = np.gradient(curve, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return curve + normal * width / 2, curve - normal * width / 2


def tube(rng: np.random.Generator, frame: Frame, anatomy: Anatomy, side: str) -> FloatArray:
    """A drain or catheter entering along the chest wall and running toward the apex."""
    sign = 1.0 if side == "L" else -1.0
    start = (sign * rng.uniform(0.4, 0.5), rng.uniform(-0.05, 0.3))
    heading = math.radians(rng.uniform(-125.0, -95.0))
    heading = heading if sign > 0 else math.pi - heading
    curve = smooth_curve(
        rng, start, heading, length=rng.uniform(0.3, 0.55), bend=rng.uniform(1.5, 4.0)
    )
    width = rng.uniform(0.008, 0.022)
    layer = draw(frame, *_samples(frame, list(_tube_walls(curve, width)), 0.09), width=0.0016)
    layer += draw(frame, *_samples(frame, [curve], 0.035), width=width / 2.5)
    if rng.random() < 0.6:
        stripe = _tube_walls(curve, width / 2)[0]
        layer += draw(frame, *_samples(frame, [stripe], 0.2), width=0.002)
    return layer


def ecg_lead(rng: np.random.Generator, frame: Frame, anatomy: Anatomy, side: str) -> FloatArray:
    """An ECG electrode near the chest wall with its wire curling away."""
    sign = 1.0 if side == "L" else -1.0
    centre = np.array([sign * rng.uniform(0.3, 0.5), rng.uniform(-0.4, 0.3)])
    heading = rng.uniform(-math.pi, math.pi)
    curve = smooth_curve(
        rng, tuple(centre), heading, length=rng.uniform(0.3, 0.7), bend=rng.uniform(2.0, 5.0)
    )
    layer = draw(frame, *_samples(frame, [curve], 0.16), width=0.0018)
    r = np.hypot(frame.x - centre[0], frame.y - centre[1])
    layer += 0.22 * np.clip((0.014 - r) * frame.scale, 0.0, 1.0)
    layer += 0.15 * np.exp(-(((r - 0.022) / 0.003) ** 2))
    return layer


def confounder(rng: np.random.Generator, frame: Frame, anatomy: Anatomy) -> FloatArray:
    """One random look-alike (skin fold half the time) on a random side."""
    side = "L" if rng.random() < 0.5 else "R"
    pick = rng.random()
    if pick < 0.5:
        return skin_fold(rng, frame, anatomy, side)
    if pick < 0.8:
        return tube(rng, frame, anatomy, side)
    return ecg_lead(rng, frame, anatomy, side)
