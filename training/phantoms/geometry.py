"""Chest geometry of a frontal phantom: the working grid and the implicit anatomy.

Everything here is in *chest units*: one unit is about the width of the thorax, ``x`` grows
toward the patient's left and ``y`` toward the feet, the origin is mid-thorax. Shapes are
implicit functions, negative inside and roughly a distance in chest units near their edge,
so that unions are ``min``, intersections ``max`` and complements a change of sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FloatArray = np.ndarray


@dataclass(frozen=True, kw_only=True)
class Frame:
    """A working pixel grid and its chest-unit coordinates.

    Parameters
    ----------
    x, y
        Chest-unit coordinates of every working pixel, float32 ``(rows, cols)``.
    scale
        Working pixels per chest unit.
    center
        ``(row, col)`` of the chest-unit origin.
    rotation
        Rotation of the patient on the detector, radians.
    """

    x: FloatArray
    y: FloatArray
    scale: float
    center: tuple[float, float]
    rotation: float

    @property
    def shape(self) -> tuple[int, int]:
        """Working grid shape ``(rows, cols)``."""
        return int(self.x.shape[0]), int(self.x.shape[1])

    def to_pixels(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Map chest-unit points to fractional ``(row, col)`` working pixels."""
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        col = (cos * x - sin * y) * self.scale + self.center[1]
        row = (sin * x + cos * y) * self.scale + self.center[0]
        return row, col

    def window(
        self, x_range: tuple[float, float], y_range: tuple[float, float]
    ) -> tuple[slice, slice]:
        """Slices of the working grid that cover a chest-unit box (rotation included)."""
        xs = np.array([x_range[0], x_range[1], x_range[0], x_range[1]])
        ys = np.array([y_range[0], y_range[0], y_range[1], y_range[1]])
        rows, cols = self.to_pixels(xs, ys)
        return _span(rows, self.shape[0]), _span(cols, self.shape[1])

    def crop(self, window: tuple[slice, slice]) -> Frame:
        """The part of this frame inside ``window`` (from :meth:`window`)."""
        rows, cols = window
        return Frame(
            x=self.x[window],
            y=self.y[window],
            scale=self.scale,
            center=(self.center[0] - rows.start, self.center[1] - cols.start),
            rotation=self.rotation,
        )


def _span(values: FloatArray, size: int) -> slice:
    """The index range ``0 .. size`` that covers fractional pixel positions ``values``."""
    start = int(np.clip(np.floor(values.min()), 0, size))
    stop = int(np.clip(np.ceil(values.max()) + 1, 0, size))
    return slice(start, max(start, stop))


def power(base: FloatArray, exponent: float) -> FloatArray:
    """``base ** exponent`` for non-negative float32 arrays, several times faster than ``**``."""
    return np.exp(np.float32(exponent) * np.log(np.maximum(base, np.float32(1e-30))))


def fraction_part(values: FloatArray) -> FloatArray:
    """``values % 1.0``, faster."""
    return values - np.floor(values)


def make_frame(
    shape: tuple[int, int], *, scale: float, center: tuple[float, float], rotation: float
) -> Frame:
    """Build the chest-unit coordinates of a working grid (see :class:`Frame`)."""
    rows = np.arange(shape[0], dtype=np.float32)[:, None] - np.float32(center[0])
    cols = np.arange(shape[1], dtype=np.float32)[None, :] - np.float32(center[1])
    cos, sin = np.float32(math.cos(rotation) / scale), np.float32(math.sin(rotation) / scale)
    x = cos * cols + sin * rows
    y = cos * rows - sin * cols
    return Frame(x=x, y=y, scale=scale, center=center, rotation=rotation)


@dataclass(frozen=True, kw_only=True)
class Lung:
    """One lung field: a superellipse cut by its diaphragm dome and the mediastinum.

    ``u`` coordinates are lateral distances from the midline (``u = sign * x``).
    """

    sign: int
    center: tuple[float, float]
    half_width: float
    top: float
    bottom: float
    power: float
    dome_peak: tuple[float, float]
    dome_curvature: float
    hilum: tuple[float, float]


@dataclass(frozen=True, kw_only=True)
class Mediastinum:
    """Central column, heart ellipse and aortic knob, in global ``(x, y)``."""

    half_width_top: float
    half_width_bottom: float
    heart_center: tuple[float, float]
    heart_axes: tuple[float, float]
    heart_angle: float
    knob_center: tuple[float, float]
    knob_radius: float


@dataclass(frozen=True, kw_only=True)
class Anatomy:
    """All sampled geometry of one frontal phantom."""

    view: str
    right: Lung
    left: Lung
    mediastinum: Mediastinum
    body_half_width: float
    rib_start: float
    rib_spacing: float
    rib_slope: float
    clavicle_y: float
    clavicle_slope: float
    carina_y: float
    scapula_border: float
    scapula_tip: float

    def lung(self, side: str) -> Lung:
        """The lung of patient side ``"L"`` or ``"R"``."""
        return self.left if side == "L" else self.right


def superellipse_radius(lung: Lung, u: FloatArray, y: FloatArray) -> FloatArray:
    """Normalised superellipse radius of points: 0 at the centre, 1 on the outline."""
    du = np.abs(u - lung.center[0]) / lung.half_width
    dy = y - lung.center[1]
    dy = np.abs(dy) / np.where(dy < 0, np.float32(lung.top), np.float32(lung.bottom))
    return power(power(du, lung.power) + power(dy, lung.power), 1.0 / lung.power)


def dome_height(lung: Lung, u: FloatArray) -> FloatArray:
    """``y`` of the diaphragm dome under the lung at lateral distance ``u``."""
    return lung.dome_peak[1] + lung.dome_curvature * (u - lung.dome_peak[0]) ** 2


def mediastinum_field(med: Mediastinum, x: FloatArray, y: FloatArray) -> FloatArray:
    """Implicit field of the mediastinum, heart and aortic knob (negative inside)."""
    ramp = np.clip((y + 0.45) / 0.5, 0.0, 1.0)
    half = med.half_width_top + (med.half_width_bottom - med.half_width_top) * ramp * ramp
    # The superior vena cava bulges a little into the right lung above the heart.
    vena_cava = 0.018 * np.exp(-(((y + 0.15) / 0.12) ** 2)) * (x < 0)
    column = np.abs(x) - half - vena_cava
    cos, sin = math.cos(med.heart_angle), math.sin(med.heart_angle)
    hx, hy = x - med.heart_center[0], y - med.heart_center[1]
    qa = (cos * hx + sin * hy) / med.heart_axes[0]
    qb = (cos * hy - sin * hx) / med.heart_axes[1]
    heart = (np.sqrt(qa * qa + qb * qb) - 1.0) * min(med.heart_axes)
    kx, ky = x - med.knob_center[0], y - med.knob_center[1]
    knob = np.sqrt(kx * kx + ky * ky) - med.knob_radius
    return np.minimum(np.minimum(column, heart), knob)


def lung_field(
    lung: Lung,
    med: Mediastinum,
    x: FloatArray,
    y: FloatArray,
    *,
    med_field: FloatArray | None = None,
    radius: FloatArray | None = None,
) -> FloatArray:
    """Implicit field of one lung (negative inside), in approximate chest units.

    ``med_field`` and ``radius`` may pass a precomputed :func:`mediastinum_field` and
    :func:`superellipse_radius` of the same points.
    """
    u = lung.sign * x
    if radius is None:
        radius = superellipse_radius(lung, u, y)
    ellipse = (radius - 1.0) * lung.half_width
    dome = y - dome_height(lung, u)
    if med_field is None:
        med_field = mediastinum_field(med, x, y)
    field = np.maximum(np.maximum(ellipse, dome), -med_field)
    return np.maximum(field, 0.02 - u)


def _lung(rng: np.random.Generator, sign: int, view: str) -> Lung:
    width = rng.uniform(0.17, 0.205)
    top = rng.uniform(0.37, 0.44) * (0.95 if view == "AP" else 1.0)
    center = (rng.uniform(0.225, 0.245), rng.uniform(-0.06, -0.02))
    dome_y = rng.uniform(0.15, 0.22) + (0.03 if sign > 0 else 0.0) - (0.03 if view == "AP" else 0.0)
    return Lung(
        sign=sign,
        center=center,
        half_width=width,
        top=top,
        bottom=rng.uniform(0.65, 0.85),
        power=rng.uniform(2.1, 2.6),
        dome_peak=(rng.uniform(0.19, 0.25), dome_y),
        dome_curvature=rng.uniform(2.4, 3.4),
        hilum=(rng.uniform(0.11, 0.14), rng.uniform(-0.09, -0.04) - 0.02 * (sign > 0)),
    )


def sample_anatomy(rng: np.random.Generator, *, view: str) -> Anatomy:
    """Draw the geometry of one frontal phantom (``view`` ``"PA"`` or ``"AP"``)."""
    right, left = _lung(rng, -1, view), _lung(rng, +1, view)
    heart_scale = rng.uniform(0.9, 1.1) * (1.12 if view == "AP" else 1.0)
    med = Mediastinum(
        half_width_top=rng.uniform(0.05, 0.065),
        half_width_bottom=rng.uniform(0.07, 0.09),
        heart_center=(rng.uniform(0.03, 0.07), rng.uniform(0.15, 0.19)),
        heart_axes=(0.22 * heart_scale, rng.uniform(0.15, 0.17)),
        heart_angle=math.radians(rng.uniform(12.0, 28.0)),
        knob_center=(rng.uniform(0.06, 0.08), rng.uniform(-0.23, -0.18)),
        knob_radius=rng.uniform(0.035, 0.05),
    )
    return Anatomy(
        view=view,
        right=right,
        left=left,
        mediastinum=med,
        body_half_width=rng.uniform(0.48, 0.53),
        rib_start=rng.uniform(-0.5, -0.46),
        rib_spacing=rng.uniform(0.068, 0.08),
        rib_slope=rng.uniform(0.8, 1.2),
        clavicle_y=rng.uniform(-0.33, -0.27) - (0.06 if view == "AP" else 0.0),
        clavicle_slope=rng.uniform(0.2, 0.4) * (0.4 if view == "AP" else 1.0),
        carina_y=rng.uniform(-0.2, -0.15),
        scapula_border=rng.uniform(0.26, 0.36),
        scapula_tip=rng.uniform(-0.05, 0.08),
    )
