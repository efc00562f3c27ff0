"""A lateral (LL) chest: one lung profile, heart in front, spine behind.

Chest units as in :mod:`training.phantoms.geometry`, but ``x`` runs from the patient's
front (negative, image left) to the back (positive, image right).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import ndimage

from training.phantoms.anatomy import band, soft
from training.phantoms.frontal import Rendering
from training.phantoms.geometry import (
    FloatArray,
    Frame,
    Lung,
    fraction_part,
    power,
    superellipse_radius,
)
from training.phantoms.strokes import draw, sample_segments
from training.phantoms.vessels import vessel_tree


def _lung(rng: np.random.Generator) -> Lung:
    return Lung(
        sign=1,
        center=(rng.uniform(0.0, 0.04), rng.uniform(-0.05, 0.0)),
        half_width=rng.uniform(0.28, 0.32),
        top=rng.uniform(0.4, 0.45),
        bottom=rng.uniform(0.6, 0.75),
        power=rng.uniform(2.2, 2.6),
        dome_peak=(rng.uniform(-0.1, 0.0), rng.uniform(0.14, 0.2)),
        dome_curvature=rng.uniform(1.4, 2.0),
        hilum=(rng.uniform(0.0, 0.06), rng.uniform(-0.06, 0.0)),
    )


def _markings(rng: np.random.Generator, frame: Frame, lung: Lung) -> FloatArray:
    layer = np.zeros(frame.shape, dtype=np.float32)
    for sign in (1, -1):
        hilum = (sign * lung.hilum[0], lung.hilum[1])
        tree = vessel_tree(rng, replace(lung, sign=sign, hilum=hilum))
        for thick in (True, False):
            pick = (tree.width >= 0.004) == thick
            pts, wts = sample_segments(
                tree.start[pick], tree.end[pick], 0.06 * tree.amplitude[pick], scale=frame.scale
            )
            layer += draw(frame, pts, wts, width=float(np.median(tree.width[pick])))
    return layer


def _lung_field(lung: Lung, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Superimposed lungs above the lower dome, and the height of the higher dome."""
    dome = lung.dome_peak[1] + lung.dome_curvature * (x - lung.dome_peak[0]) ** 2 + 0.12 * x
    field = np.maximum((superellipse_radius(lung, x, y) - 1.0) * lung.half_width, y - dome - 0.03)
    return field, dome


def _body(frame: Frame, depth: float) -> tuple[FloatArray, FloatArray]:
    """Soft tissue of trunk and raised arms, and the body mask."""
    x, y = frame.x, frame.y
    ratio = np.abs((x - 0.03) / depth)
    r = power(power(ratio, 2.6) + power(np.abs((y - 0.15) / 0.95), 2.6), 1 / 2.6)
    ax, ay = x + 0.12 + 0.3 * (y + 0.3), y + 0.65
    arms = soft((np.hypot(ax / 0.17, ay / 0.45) - 1.0) * 0.17, 0.06)
    body = np.maximum(soft((r - 1.0) * depth, 0.01), arms)
    thickness = np.sqrt(np.clip(1.0 - ratio**4, 0.0, 1.0))
    return body * (0.42 + 0.18 * thickness) + 0.1 * arms, body


def _spine(frame: Frame, spine_x: float) -> FloatArray:
    """Vertebral bodies (more lucent lower down), posterior elements and posterior ribs."""
    x, y = frame.x, frame.y
    bodies = band(x, spine_x - 0.05, spine_x + 0.035, 0.008)
    bodies = bodies * band(fraction_part(y / 0.062), 0.14, 0.9, 0.05)
    fading = 1.0 - 0.4 * np.clip((y + 0.2) / 0.6, 0.0, 1.0)
    ribs = band(fraction_part((y + 0.45 * (spine_x - x)) / 0.07), 0.0, 0.35, 0.1)
    ribs = ribs * band(x, spine_x - 0.3, spine_x, 0.06) * band(y, -0.45, 0.3, 0.05)
    return (
        0.07 * bodies * fading + 0.05 * band(x, spine_x + 0.04, spine_x + 0.1, 0.02) + 0.03 * ribs
    )


def render_lateral(rng: np.random.Generator, frame: Frame) -> Rendering:
    """Render the attenuation of a lateral chest on the working grid."""
    x, y = frame.x, frame.y
    depth = rng.uniform(0.36, 0.4)
    total, body = _body(frame, depth)
    lung = _lung(rng)
    field, dome = _lung_field(lung, x, y)
    angle = math.radians(rng.uniform(20.0, 40.0))
    cos, sin = math.cos(angle), math.sin(angle)
    hx, hy = x + 0.1, y - rng.uniform(0.05, 0.09)
    qa, qb = (cos * hx + sin * hy) / 0.17, (cos * hy - sin * hx) / 0.14
    heart = soft((np.sqrt(qa * qa + qb * qb) - 1.0) * 0.14, 0.04)
    aerated = soft(field, 0.012) * (1.0 - 0.7 * heart)
    radius = superellipse_radius(lung, x, y)
    total -= 0.36 * aerated * (0.6 + 0.4 * np.sqrt(np.clip(1.0 - radius**2, 0.0, 1.0)))
    total += 0.04 * soft(y - dome, 0.01) * soft(field, 0.01)
    spine_x = rng.uniform(0.25, 0.29)
    window = frame.window((spine_x - 0.32, spine_x + 0.12), (-1.5, 1.5))
    total[window] += _spine(frame.crop(window), spine_x) * body[window]
    window = frame.window((-depth, 0.2), (-1.5, 0.3))
    x, y = frame.x[window], frame.y[window]
    sternum = band(x, -depth + 0.06, -depth + 0.085, 0.006) * band(y, -0.4, 0.2, 0.05)
    trachea = soft(np.abs(x - 0.15 * (y + 0.6)) - 0.02, 0.008) * band(y, -0.9, -0.1, 0.03)
    total[window] += 0.08 * sternum * body[window] - 0.1 * trachea
    texture = ndimage.gaussian_filter(rng.standard_normal(frame.shape, dtype=np.float32), 1.2)
    total += (0.035 * texture + _markings(rng, frame, lung)) * aerated
    return Rendering(attenuation=total, lesion=None, fraction=0.0, chest_width=depth * frame.scale)
