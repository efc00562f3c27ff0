"""Compose a frontal (PA or AP) chest on the working grid, with or without a pneumothorax.

Layers that cover a small part of the chest are computed only in the window of the grid
that holds them, which keeps a 512-pixel phantom well under 0.1 s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from training.phantoms.anatomy import (
    airway_layer,
    body_layer,
    clavicle_layer,
    gastric_bubble,
    heart_layer,
    hilum_layer,
    lung_layer,
    rib_layer,
    scapula_layer,
    soft,
    spine_layer,
)
from training.phantoms.confounders import confounder
from training.phantoms.geometry import (
    Anatomy,
    FloatArray,
    Frame,
    lung_field,
    mediastinum_field,
    superellipse_radius,
)
from training.phantoms.pneumothorax import Collapse
from training.phantoms.strokes import draw, sample_segments
from training.phantoms.vessels import vessel_tree

#: Vessel width classes (chest units): each class is drawn with one Gaussian blur.
_WIDTH_CLASSES = (0.0055, 0.0025, 0.0)
#: Chest-unit boxes ``(x range, y range)`` that hold the lungs and smaller structures.
_LUNGS = ((-0.52, 0.52), (-0.58, 0.5))
_HEART = ((-0.32, 0.42), (-0.35, 0.45))
_UPPER = ((-0.55, 0.55), (-0.7, 0.15))


@dataclass(frozen=True, kw_only=True)
class Rendering:
    """Attenuation of one phantom on its working grid, and where its pneumothorax is.

    Parameters
    ----------
    attenuation
        Float32 working-grid image, larger is denser (brighter on screen).
    lesion
        Pneumothorax field on the working grid, negative inside; ``None`` when negative.
    fraction
        Pneumothorax area over the area of that lung field, 0.0 when negative.
    chest_width
        Width of the thorax in working pixels, for the pixel spacing.
    """

    attenuation: FloatArray
    lesion: FloatArray | None
    fraction: float
    chest_width: float


def _paint(
    total: FloatArray, frame: Frame, box: tuple, layer: Callable[[Frame], FloatArray]
) -> None:
    """Add ``layer`` computed on the part of ``frame`` inside the chest-unit ``box``."""
    window = frame.window(*box)
    if total[window].size:
        total[window] += layer(frame.crop(window))


def _vessels(
    rng: np.random.Generator, frame: Frame, anatomy: Anatomy, collapse: Collapse | None
) -> FloatArray:
    """Lung markings of both sides, carried along with the lung that collapses."""
    trees = {side: vessel_tree(rng, anatomy.lung(side)) for side in ("R", "L")}
    layer = np.zeros(frame.shape, dtype=np.float32)
    upper = np.inf
    for lower in _WIDTH_CLASSES:
        samples, widths = [], []
        for side, tree in trees.items():
            pick = (tree.width >= lower) & (tree.width < upper)
            points, weights = sample_segments(
                tree.start[pick], tree.end[pick], 0.085 * tree.amplitude[pick], scale=frame.scale
            )
            if collapse is not None and collapse.spec.side == side:
                points = collapse.warp(points)
            samples.append((points, weights))
            widths.append(tree.width[pick])
        upper = lower
        points = np.concatenate([s[0] for s in samples])
        if len(points):
            weights = np.concatenate([s[1] for s in samples])
            width = float(np.median(np.concatenate(widths)))
            layer += draw(frame, points, weights, width=width)
    return layer


def _pleural_line(frame: Frame, collapsed: FloatArray, gap: FloatArray, width: float) -> FloatArray:
    """A thin bright line along the collapsed lung outline where the gap is open."""
    grad_r, grad_c = np.gradient(collapsed)
    slope = np.hypot(grad_r, grad_c) * frame.scale
    distance = collapsed / np.maximum(slope, 1e-3)
    opening = np.clip((gap - 0.002) / 0.005, 0.0, 1.0)
    return np.exp(-0.5 * (distance / width) ** 2) * opening


def _lungs(frame: Frame, anatomy: Anatomy) -> tuple[dict, dict, dict]:
    """Air, soft mask and field of each lung, on a lung-window frame."""
    med = mediastinum_field(anatomy.mediastinum, frame.x, frame.y)
    air, masks, fields = {}, {}, {}
    for side in ("R", "L"):
        lung = anatomy.lung(side)
        radius = superellipse_radius(lung, lung.sign * frame.x, frame.y)
        fields[side] = lung_field(
            lung, anatomy.mediastinum, frame.x, frame.y, med_field=med, radius=radius
        )
        air[side], masks[side] = lung_layer(frame, fields[side], radius)
    return air, masks, fields


def _lesion(
    frame: Frame, collapse: Collapse, air: FloatArray, lung: FloatArray, mask: FloatArray
) -> tuple[FloatArray, FloatArray, float]:
    """Pneumothorax field, the change it makes to the lung's air, and its fraction.

    The airspace is darker than lung, the collapsed lung denser (it holds less air) and
    the visceral pleural line bright.
    """
    collapsed, lesion, gap, factor = collapse.fields(frame.x, frame.y, lung)
    inside = soft(lesion, 1.0 / frame.scale)
    change = -collapse.spec.darkness * mask * inside - 0.5 * air * (1.0 - factor) * (1.0 - inside)
    change += collapse.spec.line * mask * _pleural_line(frame, collapsed, gap, 0.0022)
    fraction = np.count_nonzero(lesion < 0) / max(np.count_nonzero(lung < 0), 1)
    return lesion, change, float(fraction)


def render_frontal(
    rng: np.random.Generator,
    frame: Frame,
    anatomy: Anatomy,
    *,
    collapse: Collapse | None,
    confounder_rng: np.random.Generator | None,
) -> Rendering:
    """Render attenuation; ``confounder_rng`` adds one look-alike drawn from it."""
    total, body_mask = body_layer(frame, anatomy)
    _paint(total, frame, _HEART, lambda f: heart_layer(f, anatomy))
    if rng.random() < 0.6:
        _paint(total, frame, _HEART, lambda f: gastric_bubble(f, anatomy))
    window = frame.window(*_LUNGS)
    inner = frame.crop(window)
    airs, masks, fields = _lungs(inner, anatomy)
    air, lungs = airs["R"] + airs["L"], masks["R"] + masks["L"]
    lesion, fraction, aerated = None, 0.0, lungs
    if collapse is not None:
        side = collapse.spec.side
        inner_lesion, change, fraction = _lesion(
            inner, collapse, airs[side], fields[side], masks[side]
        )
        aerated = lungs * (1.0 - soft(inner_lesion, 1.0 / frame.scale))
        air += change
        lesion = np.ones(frame.shape, dtype=np.float32)
        lesion[window] = inner_lesion
    noise = rng.standard_normal(inner.shape, dtype=np.float32)
    texture = ndimage.gaussian_filter(noise, 1.5, truncate=3.0)
    total[window] += air + 0.08 * texture * aerated
    total[window] += (
        _vessels(rng, inner, anatomy, collapse) + hilum_layer(inner, anatomy)
    ) * aerated
    _paint(total, frame, ((-0.2, 0.2), (-1.5, 0.1)), lambda f: airway_layer(f, anatomy))
    _paint(total, frame, ((-0.07, 0.07), (-1.5, 1.5)), spine_layer)
    total += rib_layer(frame, anatomy) * body_mask
    _paint(total, frame, _UPPER, lambda f: clavicle_layer(f, anatomy))
    if anatomy.view == "AP" or rng.random() < 0.2:
        window = frame.window(*_UPPER)
        total[window] += scapula_layer(frame.crop(window), anatomy) * body_mask[window]
    if confounder_rng is not None:
        total += confounder(confounder_rng, frame, anatomy)
    width = 2.0 * anatomy.body_half_width * frame.scale
    return Rendering(attenuation=total, lesion=lesion, fraction=fraction, chest_width=width)
