"""Study pictures for the web page: the stored radiograph, windowed as a viewer would show
it, with the pneumothorax outline from our SEG drawn over it. Rendered on the server so
the browser needs no DICOM support."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from triage.dicom.read import read_radiograph
from triage.dicom.seg import seg_frames
from triage.overlay import overlay_rgb

log = logging.getLogger(__name__)


def mask_from_segs(seg_paths: Sequence[Path], sop_instance_uid: str, shape: tuple[int, int]):
    """The union of the SEG frames drawn on ``sop_instance_uid`` (None if there are none)."""
    mask = None
    for path in seg_paths:
        try:
            frames = seg_frames(pydicom.dcmread(path))
        except (OSError, ValueError, pydicom.errors.InvalidDicomError) as exc:
            log.warning("cannot read SEG %s for the picture: %s", path.name, exc)
            continue
        for uid, frame in frames:
            if uid == sop_instance_uid and frame.shape == shape:
                mask = frame if mask is None else mask | frame
    return mask


def study_image_png(
    image_path: Path, seg_paths: Sequence[Path], sop_instance_uid: str, *, max_size: int = 1024
) -> bytes:
    """PNG bytes of the image with the outline of its SEG(s).

    Raises
    ------
    triage.errors.ReadError
        If the stored image cannot be read.
    """
    _, radiograph = read_radiograph(image_path)
    mask = mask_from_segs(seg_paths, sop_instance_uid, radiograph.pixels.shape)
    picture = overlay_rgb(np.clip(radiograph.pixels, 0.0, 1.0), mask, max_size=max_size)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
