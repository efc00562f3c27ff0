"""Training data readers. This version: the SIIM 256-px PNG layout.

Every reader yields :class:`Sample` objects (an image in display sense and its mask) and
reports the files it had to skip instead of stopping the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

#: SIIM's PNG masks were resized with interpolation: values above this are lesion.
PNG_MASK_THRESHOLD = 127


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One training image: pixels in [0, 1] (1 = bright) and its boolean mask."""

    image_id: str
    pixels: np.ndarray
    mask: np.ndarray

    @property
    def positive(self) -> bool:
        """Whether the image shows a pneumothorax."""
        return bool(self.mask.any())


@dataclass(kw_only=True)
class SiimPngDataset:
    """``root/train/<ImageId>.png`` images with ``root/masks/<ImageId>.png`` masks.

    Raises
    ------
    FileNotFoundError
        If ``root/train`` does not exist.
    """

    root: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not (self.root / "train").is_dir():
            raise FileNotFoundError(
                f"{self.root / 'train'} not found: expected the SIIM PNG layout (train/, masks/)"
            )

    @property
    def image_ids(self) -> list[str]:
        """ImageIds of the images present, sorted."""
        return sorted(p.stem for p in (self.root / "train").glob("*.png"))

    def __iter__(self) -> Iterator[Sample]:
        for image_id in self.image_ids:
            sample = self.load(image_id)
            if sample is not None:
                yield sample

    def load(self, image_id: str) -> Sample | None:
        """Read one image and its mask; None (and a note in ``skipped``) when unusable."""
        image_path = self.root / "train" / f"{image_id}.png"
        mask_path = self.root / "masks" / f"{image_id}.png"
        try:
            pixels = np.asarray(Image.open(image_path).convert("L"), dtype=np.float32) / 255.0
            mask = np.asarray(Image.open(mask_path).convert("L")) > PNG_MASK_THRESHOLD
        except FileNotFoundError as exc:
            return self._skip(str(exc.filename), "file missing")
        except (UnidentifiedImageError, OSError) as exc:
            return self._skip(str(image_path), f"unreadable image: {exc}")
        if mask.shape != pixels.shape:
            return self._skip(str(mask_path), f"mask is {mask.shape}, image is {pixels.shape}")
        return Sample(image_id=image_id, pixels=pixels, mask=mask)

    def _skip(self, path: str, reason: str) -> None:
        log.warning("skipped %s: %s", path, reason)
        self.skipped.append((path, reason))
        return None
