"""One synthetic chest radiograph and its ground truth: :func:`render_phantom`.

The anatomy is rendered on a working grid of 512 to 768 pixels along the longer side, mapped
to display brightness, resampled smoothly to the requested size and given noise at full
resolution. Each phantom draws from five child streams of the generator it is given
(anatomy, pneumothorax, confounder, exposure, noise), so the same generator state renders
the same anatomy with and without a pneumothorax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from training.phantoms.errors import PhantomError
from training.phantoms.frontal import Rendering, render_frontal
from training.phantoms.geometry import FloatArray, Frame, make_frame, power, sample_anatomy
from training.phantoms.lateral import render_lateral
from training.phantoms.pneumothorax import PneumothoraxSpec, fit_collapse, sample_pneumothorax

VIEWS = ("PA", "AP", "LL")
#: Longest side of the working grid, smallest and largest.
WORKING_SIZE = (512, 768)
#: Chance that an image is stored mirrored (patient right on image right).
FLIP_PROBABILITY = 0.1
#: Chance of a skin fold, tube or wire on a negative and on a positive frontal image.
CONFOUNDER_PROBABILITY = {False: 0.3, True: 0.2}


@dataclass(frozen=True, kw_only=True)
class Phantom:
    """A synthetic radiograph and its ground truth.

    Parameters
    ----------
    image
        Float32 ``(rows, cols)`` in [0, 1], display sense (1 is bright), already mirrored
        when ``patient_orientation`` is ``("R", "F")``.
    mask
        Bool ``(rows, cols)``, True inside the pneumothorax; all False when negative.
    positive
        Whether the image shows a pneumothorax.
    side
        Patient side of the pneumothorax, ``"L"`` or ``"R"``; None when negative.
    fraction
        Pneumothorax area over the area of that lung field; 0.0 when negative.
    view
        ``"PA"``, ``"AP"`` or ``"LL"``.
    patient_orientation
        DICOM Patient Orientation: ``("L", "F")`` or mirrored ``("R", "F")`` for frontal
        images, ``("P", "F")`` or mirrored ``("A", "F")`` for laterals.
    """

    image: np.ndarray
    mask: np.ndarray
    positive: bool
    side: str | None
    fraction: float
    view: str
    patient_orientation: tuple[str, str]


def working_shape(rows: int, cols: int) -> tuple[int, int]:
    """Working grid for an output of ``rows`` x ``cols``: same aspect, 512-768 long side."""
    longest = max(rows, cols)
    factor = min(max(longest, WORKING_SIZE[0]), WORKING_SIZE[1]) / longest
    return max(round(rows * factor), 8), max(round(cols * factor), 8)


def _frame(rng: np.random.Generator, shape: tuple[int, int]) -> Frame:
    rows, cols = shape
    scale = min(cols / 1.2, rows / 1.25) * rng.uniform(0.9, 1.02)
    centre = (
        rows / 2 + scale * rng.uniform(0.0, 0.05),
        cols / 2 + scale * rng.uniform(-0.03, 0.03),
    )
    rotation = math.radians(rng.uniform(-4.0, 4.0))
    return make_frame(shape, scale=scale, center=centre, rotation=rotation)


def _tone(rng: np.random.Generator, attenuation: FloatArray) -> FloatArray:
    """Map attenuation to display brightness with random exposure, contrast and processing."""
    k = rng.uniform(0.9, 1.6)
    image = (1.0 - np.exp(-k * np.maximum(attenuation, 0.0))) / (1.0 - math.exp(-k * 0.9))
    image = rng.uniform(0.92, 1.08) * image + rng.uniform(-0.03, 0.04)
    image = power(np.clip(image, 0.0, 1.0), rng.uniform(0.9, 1.3))
    rows = np.linspace(-0.5, 0.5, image.shape[0], dtype=np.float32)[:, None]
    image = image * (1.0 + rng.uniform(-0.08, 0.08) * rows)
    if rng.random() < 0.35:
        blurred = ndimage.uniform_filter(image, max(image.shape) // 24)
        image = image + rng.uniform(0.2, 0.6) * (image - blurred)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _resize(array: FloatArray, rows: int, cols: int, *, smooth: bool) -> FloatArray:
    if array.shape == (rows, cols):
        return array
    method = Image.Resampling.BICUBIC if smooth else Image.Resampling.BILINEAR
    resized = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32)).resize(
        (cols, rows), method
    )
    return np.asarray(resized, dtype=np.float32)


def _mask(lesion: FloatArray | None, rows: int, cols: int) -> np.ndarray:
    """Pneumothorax mask at output size: never empty when there is a pneumothorax."""
    if lesion is None:
        return np.zeros((rows, cols), dtype=bool)
    if rows >= lesion.shape[0]:
        return _resize(lesion, rows, cols, smooth=False) < 0
    # Shrinking: a pixel is inside when the lesion covers half of it, and a rim thinner
    # than a pixel keeps its best-covered pixels so a positive never loses its mask.
    inside = Image.fromarray((lesion < 0).astype(np.float32))
    coverage = np.asarray(inside.resize((cols, rows), Image.Resampling.BOX))
    return coverage >= max(min(0.5, 0.5 * float(coverage.max())), 1e-6)


def _add_noise(rng: np.random.Generator, image: FloatArray) -> FloatArray:
    """Quantum-like noise, stronger where fewer photons arrive (bright areas)."""
    sigma = np.float32(rng.uniform(0.006, 0.016))
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image + sigma * (0.5 + image) * noise, 0.0, 1.0)


def _check(rows: int, cols: int, view: str) -> None:
    for name, value in (("rows", rows), ("cols", cols)):
        if not isinstance(value, int | np.integer) or not 64 <= value <= 16384:
            raise PhantomError(f"{name} must be an integer from 64 to 16384, got {value!r}")
    if view not in VIEWS:
        raise PhantomError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")


def render(
    rng: np.random.Generator,
    *,
    rows: int,
    cols: int,
    positive: bool,
    view: str = "PA",
    pneumothorax: PneumothoraxSpec | None = None,
) -> tuple[Phantom, float]:
    """Render a phantom (see :func:`render_phantom`) and its thorax width in output pixels."""
    _check(rows, cols, view)
    anatomy_rng, lesion_rng, confounder_rng, look_rng, noise_rng = rng.spawn(5)
    shape = working_shape(rows, cols)
    mirrored = anatomy_rng.random() < FLIP_PROBABILITY
    frame = _frame(anatomy_rng, shape)
    positive = bool(positive) and view != "LL"
    spec = None
    if view == "LL":
        rendering: Rendering = render_lateral(anatomy_rng, frame)
    else:
        anatomy = sample_anatomy(anatomy_rng, view=view)
        spec = (pneumothorax or sample_pneumothorax(lesion_rng)) if positive else None
        collapse = fit_collapse(spec, anatomy) if spec is not None else None
        with_confounder = confounder_rng.random() < CONFOUNDER_PROBABILITY[positive]
        rendering = render_frontal(
            anatomy_rng,
            frame,
            anatomy,
            collapse=collapse,
            confounder_rng=confounder_rng if with_confounder else None,
        )
    image = _add_noise(
        noise_rng, _resize(_tone(look_rng, rendering.attenuation), rows, cols, smooth=True)
    )
    mask = _mask(rendering.lesion, rows, cols)
    if mirrored:
        image, mask = image[:, ::-1].copy(), mask[:, ::-1].copy()
    frontal = ("R", "F") if mirrored else ("L", "F")
    lateral = ("A", "F") if mirrored else ("P", "F")
    phantom = Phantom(
        image=image,
        mask=mask,
        positive=positive,
        side=spec.side if spec is not None else None,
        fraction=rendering.fraction,
        view=view,
        patient_orientation=lateral if view == "LL" else frontal,
    )
    return phantom, rendering.chest_width * cols / shape[1]


def render_phantom(
    rng: np.random.Generator,
    *,
    rows: int,
    cols: int,
    positive: bool,
    view: str = "PA",
    pneumothorax: PneumothoraxSpec | None = None,
) -> Phantom:
    """Render one synthetic chest radiograph with its pneumothorax mask.

    Parameters
    ----------
    rng
        Source of randomness; the same generator state gives a bit-identical phantom.
    rows, cols
        Output size in pixels, 64 to 16384 each.
    positive
        Whether to draw a pneumothorax (ignored for laterals, which are always negative).
    view
        ``"PA"``, ``"AP"`` or ``"LL"``.
    pneumothorax
        A given pneumothorax instead of a random one (positives only).

    Returns
    -------
    Phantom

    Raises
    ------
    PhantomError
        If ``rows`` or ``cols`` is out of range or ``view`` is not a known view.
    """
    return render(
        rng, rows=rows, cols=cols, positive=positive, view=view, pneumothorax=pneumothorax
    )[0]
