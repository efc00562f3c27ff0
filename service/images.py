"""Loading one stored image for analysis: read, check eligibility, decode.

Shared by ``triage predict`` and the worker, so a file is judged the same way offline and
in the service: not readable or not decodable is an ``error``, not eligible or not a
greyscale single-frame image is ``skipped``, both with a reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from triage.dicom.read import Radiograph, read_dataset, to_radiograph
from triage.dicom.select import eligibility
from triage.errors import ReadError, UnsupportedImageError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PassedOver:
    """An image that will not be analysed, and why."""

    status: str  # "skipped" or "error"
    reason: str
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None


@dataclass(frozen=True, kw_only=True)
class Loaded:
    """An eligible image, decoded."""

    dataset: Dataset
    radiograph: Radiograph


def load_image(path: Path) -> Loaded | PassedOver:
    """Read ``path`` and decode it if it is an eligible chest radiograph."""
    try:
        ds = read_dataset(path)
    except ReadError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return PassedOver(status="error", reason=str(exc))
    sop_uid = str(ds.get("SOPInstanceUID", "")) or None
    study_uid = str(ds.get("StudyInstanceUID", "")) or None
    verdict = eligibility(ds)
    if not verdict.eligible:
        return PassedOver(
            status="skipped",
            reason=verdict.reason or "not eligible",
            sop_instance_uid=sop_uid,
            study_instance_uid=study_uid,
        )
    try:
        return Loaded(dataset=ds, radiograph=to_radiograph(ds))
    except UnsupportedImageError as exc:
        return PassedOver(
            status="skipped",
            reason=str(exc),
            sop_instance_uid=sop_uid,
            study_instance_uid=study_uid,
        )
    except ReadError as exc:
        log.warning("cannot decode %s (SOP %s): %s", path, sop_uid, exc)
        return PassedOver(
            status="error", reason=str(exc), sop_instance_uid=sop_uid, study_instance_uid=study_uid
        )
