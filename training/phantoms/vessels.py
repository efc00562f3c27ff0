"""Lung markings: branching vessel trees that radiate from each hilum and fade outward."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.phantoms.geometry import FloatArray, Lung


@dataclass(frozen=True, kw_only=True)
class VesselTree:
    """Segments of one lung's vessel tree in global chest units.

    Parameters
    ----------
    start, end
        ``(n, 2)`` segment end points ``(x, y)``.
    width
        ``(n,)`` Gaussian half-width of each vessel, chest units.
    amplitude
        ``(n,)`` brightness of each vessel.
    """

    start: FloatArray
    end: FloatArray
    width: FloatArray
    amplitude: FloatArray


def _branch(
    rng: np.random.Generator, angle: FloatArray, hilum_angle: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Child headings: two per parent (sometimes one), pulled toward the radial direction."""
    n = angle.size
    spread = np.radians(rng.uniform(12.0, 30.0, n))
    radial = 0.25 * (hilum_angle - angle)
    first = angle + spread + radial
    second = angle - spread * rng.uniform(0.6, 1.2, n) + radial
    forked = rng.random(n) < 0.88
    parent = np.concatenate([np.arange(n), np.flatnonzero(forked)])
    return np.concatenate([first, second[forked]]), parent


def vessel_tree(rng: np.random.Generator, lung: Lung, *, generations: int = 8) -> VesselTree:
    """Grow a random vessel tree from the hilum of ``lung``.

    Primary branches fan out over the lung (up, out and down); each generation forks,
    shortens, thins and fades, so markings are coarse at the hilum and faint at the rim.
    """
    count = int(rng.integers(6, 9))
    angle = np.radians(np.linspace(-118.0, 95.0, count) + rng.normal(0.0, 6.0, count))
    hilum = np.array(lung.hilum)
    start = hilum + rng.normal(0.0, 0.01, (count, 2))
    length = rng.uniform(0.065, 0.095, count)
    width = np.full(count, rng.uniform(0.0075, 0.0095))
    amplitude = np.ones(count)
    parts: list[tuple[FloatArray, ...]] = []
    for _ in range(generations):
        end = start + length[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        parts.append((start, end, width, amplitude))
        out = end - hilum
        angle, parent = _branch(rng, angle, np.arctan2(out[:, 1], out[:, 0]))
        start = end[parent]
        length = length[parent] * rng.uniform(0.66, 0.84, parent.size)
        width = width[parent] * 0.74
        amplitude = amplitude[parent] * rng.uniform(0.78, 0.9, parent.size)
    start, end, width, amplitude = (np.concatenate(p) for p in zip(*parts, strict=True))
    flip = np.array([lung.sign, 1.0])
    return VesselTree(start=start * flip, end=end * flip, width=width, amplitude=amplitude)
