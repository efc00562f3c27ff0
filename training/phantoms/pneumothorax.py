"""Pneumothorax: one lung pulled away from the chest wall toward its hilum.

The collapsed lung is the lung field shrunk toward the hilum by a factor that dips below 1
only over a range of directions (apical and/or lateral). The airspace between the chest
wall and the shrunk outline is the pneumothorax; the shrunk outline is the visceral pleural
line. The shrink amount is solved so the airspace is a chosen fraction of that lung field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from training.phantoms.geometry import Anatomy, FloatArray, Lung, Mediastinum, lung_field

#: Smallest and largest pneumothorax, as a fraction of the hemithorax lung field.
FRACTION_RANGE = (0.01, 0.40)
#: Directions seen from the hilum (degrees, 0 lateral, -90 apical) a collapse may reach.
ANGLE_RANGE = (-135.0, 75.0)


@dataclass(frozen=True, kw_only=True)
class PneumothoraxSpec:
    """What a pneumothorax should look like, before it meets a particular anatomy.

    Parameters
    ----------
    side
        Patient side, ``"L"`` or ``"R"``.
    angle
        Centre of the collapse seen from the hilum, degrees: 0 lateral, -90 apical.
    span
        Half-width of the range of directions that collapse, degrees.
    fraction
        Target airspace area over the lung field area of that side.
    darkness
        How much darker the airspace is than aerated lung (attenuation units).
    line
        Brightness of the visceral pleural line.
    """

    side: str
    angle: float
    span: float
    fraction: float
    darkness: float
    line: float


def sample_pneumothorax(rng: np.random.Generator) -> PneumothoraxSpec:
    """Draw a pneumothorax; sizes follow a scaled Beta(1.4, 3) so most are moderate."""
    low, high = FRACTION_RANGE
    fraction = low + (high - low) * rng.beta(1.4, 3.0)
    span = min(rng.uniform(35.0, 60.0) + 120.0 * fraction, 110.0)
    first, last = ANGLE_RANGE
    angle = rng.uniform(-115.0, 5.0)
    return PneumothoraxSpec(
        side="L" if rng.random() < 0.5 else "R",
        angle=float(np.clip(angle, first + span, last - span)),
        span=span,
        fraction=fraction,
        darkness=rng.uniform(0.08, 0.14),
        line=rng.uniform(0.08, 0.16),
    )


def vary(spec: PneumothoraxSpec, rng: np.random.Generator) -> PneumothoraxSpec:
    """The same pneumothorax on a second image of the study: a little bigger or smaller."""
    low, high = FRACTION_RANGE
    return replace(
        spec,
        angle=spec.angle + rng.uniform(-8.0, 8.0),
        fraction=float(np.clip(spec.fraction * rng.uniform(0.8, 1.25), low, high)),
    )


@dataclass(frozen=True, kw_only=True)
class Collapse:
    """A pneumothorax fitted to one anatomy: which lung, toward where, by how much."""

    spec: PneumothoraxSpec
    lung: Lung
    mediastinum: Mediastinum
    amount: float

    def shrink(self, x: FloatArray, y: FloatArray) -> FloatArray:
        """Shrink factor toward the hilum of every point: 1 where the lung stays put."""
        u = self.lung.sign * x - self.lung.hilum[0]
        v = y - self.lung.hilum[1]
        delta = np.arctan2(v, u) - math.radians(self.spec.angle)
        delta = np.abs((delta + np.pi) % (2 * np.pi) - np.pi) / math.radians(self.spec.span)
        t = np.clip((1.0 - delta) / 0.6, 0.0, 1.0)
        return 1.0 - self.amount * t * t * (3.0 - 2.0 * t)

    def warp(self, points: FloatArray) -> FloatArray:
        """Move ``(n, 2)`` lung points with the collapsing lung."""
        hilum = np.array([self.lung.sign * self.lung.hilum[0], self.lung.hilum[1]])
        factor = self.shrink(points[:, 0], points[:, 1])
        return hilum + (points - hilum) * factor[:, None]

    def fields(self, x: FloatArray, y: FloatArray, lung: FloatArray) -> tuple[FloatArray, ...]:
        """Collapsed-lung field, pneumothorax field, gap width and shrink factor.

        ``lung`` is the :func:`lung_field` of the same points. The pneumothorax field is
        negative exactly inside the lung field and outside the collapsed lung.
        """
        factor = self.shrink(x, y)
        hx, hy = self.lung.sign * self.lung.hilum[0], self.lung.hilum[1]
        sx, sy = hx + (x - hx) / factor, hy + (y - hy) / factor
        collapsed = lung_field(self.lung, self.mediastinum, sx, sy, med_field=None) * factor
        gap = np.hypot(x - hx, y - hy) * (1.0 / factor - 1.0)
        return collapsed, np.maximum(lung, -collapsed), gap, factor


def _fraction(collapse: Collapse, x: FloatArray, y: FloatArray, lung: FloatArray) -> float:
    inside = lung < 0
    _, ptx, _, _ = collapse.fields(x[inside], y[inside], lung[inside])
    return float(np.count_nonzero(ptx < 0)) / max(int(np.count_nonzero(inside)), 1)


def fit_collapse(spec: PneumothoraxSpec, anatomy: Anatomy) -> Collapse:
    """Solve the shrink amount so the airspace covers ``spec.fraction`` of the lung field."""
    lung = anatomy.lung(spec.side)
    y, u = np.mgrid[-0.6:0.5:110j, 0.0:0.5:60j]
    x = lung.sign * u
    field = lung_field(lung, anatomy.mediastinum, x, y, med_field=None)
    low, high = 0.0, 0.97
    for _ in range(14):
        mid = 0.5 * (low + high)
        trial = Collapse(spec=spec, lung=lung, mediastinum=anatomy.mediastinum, amount=mid)
        if _fraction(trial, x, y, field) < spec.fraction:
            low = mid
        else:
            high = mid
    amount = 0.5 * (low + high)
    return Collapse(spec=spec, lung=lung, mediastinum=anatomy.mediastinum, amount=amount)
