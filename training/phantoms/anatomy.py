"""Attenuation layers of a frontal chest: soft tissue, lungs, mediastinum, bones, airway.

Each function returns a float32 layer on the working grid in *attenuation units*: about 0.5
for the thickest soft tissue, added up by the caller and mapped to display brightness.
"""

from __future__ import annotations

import math

import numpy as np

from training.phantoms.geometry import (
    Anatomy,
    FloatArray,
    Frame,
    dome_height,
    fraction_part,
)


def soft(field: FloatArray, width: float) -> FloatArray:
    """Inside-ness of an implicit field with a linear ramp ``width`` wide: 1 inside, 0 out."""
    return np.clip(0.5 - field * np.float32(1.0 / width), 0.0, 1.0)


def band(t: FloatArray, low: float, high: float, edge: float) -> FloatArray:
    """Smooth indicator of ``low <= t <= high`` with ramps ``edge`` wide."""
    return np.clip(np.minimum(t - low, high - t) / edge + 0.5, 0.0, 1.0)


def body_layer(frame: Frame, anatomy: Anatomy) -> tuple[FloatArray, FloatArray]:
    """Tissue crossed by the beam: thick mid-body, thin at the flanks, neck and shoulders.

    Returns the attenuation of a body without air and the soft body mask.
    """
    x, y = frame.x, frame.y
    shoulder = 0.12 * np.exp(-(((y + 0.46) / 0.14) ** 2))
    neck = np.clip((y + 0.76) / 0.3, 0.0, 1.0)
    half = 0.11 + (anatomy.body_half_width - 0.11 + shoulder) * neck * neck * (3 - 2 * neck)
    ratio = np.abs(x) / half
    mask = soft((ratio - 1.0) * half, 0.008)
    thickness = np.sqrt(np.clip(1.0 - ratio**4, 0.0, 1.0))
    return mask * (0.12 + 0.48 * thickness), mask


def lung_layer(
    frame: Frame, field: FloatArray, radius: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Air of one lung (negative, deepest mid-lung) and its soft mask.

    ``field`` and ``radius`` are the lung's field and superellipse radius on ``frame``.
    """
    mask = soft(field, 0.012)
    depth = np.sqrt(np.clip(1.0 - radius * radius, 0.0, 1.0))
    lower = np.clip((frame.y - 0.05) / 0.3, 0.0, 1.0)
    return -0.42 * mask * (0.55 + 0.45 * depth) * (1.0 - 0.12 * lower), mask


def hilum_layer(frame: Frame, anatomy: Anatomy) -> FloatArray:
    """Hilar shadows: pulmonary arteries and veins bunched where the markings start."""
    layer = np.zeros(frame.shape, dtype=np.float32)
    for lung in (anatomy.right, anatomy.left):
        dx = (frame.x - lung.sign * (lung.hilum[0] - 0.01)) / 0.028
        dy = (frame.y - lung.hilum[1] - 0.02) / 0.055
        layer += 0.06 * np.exp(-0.5 * (dx * dx + dy * dy))
    return layer


def dome_line(anatomy: Anatomy, frame: Frame) -> FloatArray:
    """``y`` of the diaphragm under every column: the right dome left of the midline."""
    x = frame.x
    return np.where(x < 0, dome_height(anatomy.right, -x), dome_height(anatomy.left, x))


def gastric_bubble(frame: Frame, anatomy: Anatomy) -> FloatArray:
    """Air in the stomach fundus under the left dome, with a flat fluid level."""
    x, y = frame.x, frame.y
    top = float(dome_height(anatomy.left, np.float32(0.2))) + 0.035
    bx, by = (x - 0.2) / 0.065, (y - top - 0.03) / 0.035
    gas = soft(np.maximum((np.sqrt(bx * bx + by * by) - 1.0) * 0.035, top - y), 0.006)
    return -0.07 * gas


def _segment_distance(x: FloatArray, y: FloatArray, a: tuple, b: tuple) -> FloatArray:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(x - ax - t * dx, y - ay - t * dy)


def airway_layer(frame: Frame, anatomy: Anatomy) -> FloatArray:
    """Trachea and main bronchi: dark air columns in the upper mediastinum."""
    x, y = frame.x, frame.y
    carina = (0.005, anatomy.carina_y)
    trachea = _segment_distance(x, y, (0.0, -0.8), carina) - 0.022
    right = _segment_distance(x, y, carina, (-0.1, anatomy.carina_y + 0.07)) - 0.014
    left = _segment_distance(x, y, carina, (0.11, anatomy.carina_y + 0.1)) - 0.013
    return -0.11 * soft(np.minimum(np.minimum(trachea, right), left), 0.01)


def heart_layer(frame: Frame, anatomy: Anatomy) -> FloatArray:
    """Blood in the heart and aortic knob, a little denser than the mediastinal fat."""
    med = anatomy.mediastinum
    cos, sin = math.cos(med.heart_angle), math.sin(med.heart_angle)
    x, y = frame.x - med.heart_center[0], frame.y - med.heart_center[1]
    qa, qb = (cos * x + sin * y) / med.heart_axes[0], (cos * y - sin * x) / med.heart_axes[1]
    heart = np.sqrt(qa * qa + qb * qb) - 1.0
    kx, ky = frame.x - med.knob_center[0], frame.y - med.knob_center[1]
    knob = np.hypot(kx, ky) / med.knob_radius - 1.0
    return 0.035 * soft(heart * 0.1, 0.03) + 0.03 * soft(knob * med.knob_radius, 0.015)


def spine_layer(frame: Frame) -> FloatArray:
    """Thoracic vertebrae: column with disc spaces and paired pedicle rings."""
    x, y = frame.x, frame.y
    column = band(x, -0.045, 0.045, 0.012)
    phase = fraction_part(y / 0.062)
    bodies = band(phase, 0.12, 0.92, 0.08)
    pedicle = np.hypot((np.abs(x) - 0.032) / 0.011, (phase - 0.4) * 0.062 / 0.016)
    ring = np.exp(-(((pedicle - 1.0) / 0.3) ** 2))
    return column * (0.03 + 0.02 * bodies + 0.015 * ring)


def rib_layer(frame: Frame, anatomy: Anatomy) -> FloatArray:
    """Posterior ribs (arcs with bright cortices) and fainter anterior ribs, both sides."""
    u, y = np.abs(frame.x), frame.y
    wall = anatomy.body_half_width - 0.015
    below = soft(dome_line(anatomy, frame) + 0.02 - y, 0.06)
    reach = band(u, 0.03, wall, 0.06) * (1.0 - 0.7 * below)
    lateral = np.maximum(u - 0.1, 0.0)
    arc = y - anatomy.rib_slope * 1.6 * lateral**2 * (1.0 + 2.5 * lateral) + 0.04 * lateral
    t = (arc - anatomy.rib_start) / anatomy.rib_spacing
    index = np.floor(t)
    phase = t - index
    inside = band(phase, 0.0, 0.46, 0.06) * ((index >= 0) & (index < 10))
    cortex = np.exp(-((phase / 0.05) ** 2)) + np.exp(-(((phase - 0.46) / 0.05) ** 2))
    posterior = inside * (0.05 + 0.035 * np.minimum(cortex, 1.0))
    slant = y + 0.55 * (wall - u) - 0.4 * (wall - u) ** 2
    ta = (slant - anatomy.rib_start - 0.12) / (anatomy.rib_spacing * 1.15)
    anterior = (
        band(fraction_part(ta), 0.0, 0.5, 0.12) * ((ta >= 0) & (ta < 6)) * band(u, 0.13, wall, 0.05)
    )
    return reach * (posterior + 0.025 * anterior)


def clavicle_layer(frame: Frame, anatomy: Anatomy) -> FloatArray:
    """Both clavicles: S-shaped bands from the sternum to the shoulders."""
    u, y = np.abs(frame.x), frame.y
    centre = anatomy.clavicle_y - anatomy.clavicle_slope * (u - 0.05) + 0.5 * (u - 0.22) ** 2
    half = 0.026 - 0.01 * np.clip((u - 0.05) / 0.35, 0.0, 1.0)
    d = np.abs(y - centre) / half
    bone = np.clip(2.5 - 2.5 * d, 0.0, 1.0) * band(u, 0.04, 0.42, 0.03)
    return bone * (0.08 + 0.05 * np.exp(-(((d - 0.85) / 0.2) ** 2)))


def scapula_layer(frame: Frame, anatomy: Anatomy) -> FloatArray:
    """Scapular blades over the lateral upper lungs (AP films, poorly rotated PA)."""
    u, y = np.abs(frame.x), frame.y
    edge = u - (anatomy.scapula_border + 0.25 * np.clip(y + 0.42, 0.0, 0.5))
    height = band(y, -0.6, anatomy.scapula_tip, 0.12) * band(y, -2.0, anatomy.scapula_tip, 0.03)
    # The blade narrows from the glenoid down to its inferior angle.
    width = 0.16 * np.clip((anatomy.scapula_tip - y) / 0.35, 0.0, 1.0)
    blade = soft(-edge, 0.006) * soft(edge - width, 0.02) * height
    line = np.exp(-((edge / 0.004) ** 2)) * height * (width > 0)
    return 0.035 * blade + 0.035 * line
