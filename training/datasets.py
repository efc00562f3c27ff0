"""Training data readers: SIIM 256-px PNG, SIIM-ACR DICOM + label CSV, DICOM image + SEG.

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
#: File that ``triage synth --siim-png`` leaves beside train/ and masks/.
PHANTOM_MARKER = "PHANTOMS.txt"


def is_phantom(ds) -> bool:
    """Whether a DICOM dataset was written by our phantom generator."""
    from training.phantoms.dicomio import MANUFACTURER

    return str(ds.get("Manufacturer", "")) == MANUFACTURER


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One training image: pixels in [0, 1] (1 = bright) and its boolean mask."""

    image_id: str
    pixels: np.ndarray
    mask: np.ndarray
    patient_id: str = ""
    synthetic: bool = False  # a phantom, not a radiograph of a person

    def __post_init__(self) -> None:
        if not self.patient_id:
            # Without a patient, each image is its own group in the folds.
            object.__setattr__(self, "patient_id", self.image_id)

    @property
    def positive(self) -> bool:
        """Whether the image shows a pneumothorax."""
        return bool(self.mask.any())

    @classmethod
    def of_dicom(cls, image_id: str, pixels: np.ndarray, mask: np.ndarray, ds) -> Sample:
        """A sample read from DICOM: the patient and the phantom mark come from ``ds``."""
        return cls(
            image_id=image_id,
            pixels=pixels,
            mask=mask,
            patient_id=str(ds.get("PatientID", "") or ""),
            synthetic=is_phantom(ds),
        )


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
        # The PNG set carries no patient: each image is its own group in the folds.
        return Sample(
            image_id=image_id,
            pixels=pixels,
            mask=mask,
            synthetic=(self.root / PHANTOM_MARKER).exists(),
        )

    def _skip(self, path: str, reason: str) -> None:
        log.warning("skipped %s: %s", path, reason)
        self.skipped.append((path, reason))
        return None


@dataclass(kw_only=True)
class DicomSegDataset:
    """Pairs of a DICOM radiograph and a DICOM SEG of it, found anywhere under ``root``.

    A SEG is matched to its source through its ReferencedSeriesSequence; its frames are
    OR-ed into one mask of the source's rows×cols. Images without a SEG are negatives
    only when ``images_without_seg_are_negative`` is set (reader-confirmed normals);
    otherwise they are passed over. This is how our own outputs and SEGs corrected by
    radiologists become training data.
    """

    root: Path
    images_without_seg_are_negative: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Sample]:
        import pydicom

        from triage.dicom.read import to_radiograph
        from triage.errors import ReadError

        images: dict[str, Path] = {}
        masks: dict[str, np.ndarray] = {}
        for path in sorted(p for p in Path(self.root).rglob("*") if p.is_file()):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except (pydicom.errors.InvalidDicomError, OSError) as exc:
                self._skip(str(path), f"not DICOM: {exc}")
                continue
            if ds.get("Modality") == "SEG":
                for uid, mask in self._seg_masks(path):
                    masks[uid] = masks[uid] | mask if uid in masks else mask
            elif "SOPInstanceUID" in ds:
                images[str(ds.SOPInstanceUID)] = path
        for uid, path in images.items():
            mask = masks.get(uid)
            if mask is None and not self.images_without_seg_are_negative:
                continue
            try:
                ds = pydicom.dcmread(path)
                radiograph = to_radiograph(ds)
            except ReadError as exc:
                self._skip(str(path), str(exc))
                continue
            if mask is None:
                mask = np.zeros(radiograph.pixels.shape, dtype=bool)
            if mask.shape != radiograph.pixels.shape:
                self._skip(str(path), f"SEG is {mask.shape}, image is {radiograph.pixels.shape}")
                continue
            yield Sample.of_dicom(uid, radiograph.pixels, mask, ds)

    def _seg_masks(self, path: Path) -> Iterator[tuple[str, np.ndarray]]:
        """(source SOP Instance UID, mask) per frame of a SEG."""
        import pydicom

        from triage.dicom.seg import seg_frames

        try:
            yield from seg_frames(pydicom.dcmread(path))
        except (ValueError, AttributeError, KeyError, IndexError) as exc:
            self._skip(str(path), f"unreadable SEG: {exc}")

    def _skip(self, path: str, reason: str) -> None:
        log.warning("skipped %s: %s", path, reason)
        self.skipped.append((path, reason))


def read_label_csv(path: Path) -> dict[str, list[str]]:
    """SIIM label rows by ImageId; names and values stripped of the stray spaces they carry."""
    import csv

    rows: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, skipinitialspace=True):
            clean = {str(k).strip(): str(v).strip() for k, v in row.items()}
            try:
                rows.setdefault(clean["ImageId"], []).append(clean["EncodedPixels"])
            except KeyError as exc:
                raise ValueError(
                    f"{path} lacks the column {exc}: expected ImageId, EncodedPixels"
                ) from exc
    return rows


@dataclass(kw_only=True)
class SiimDicomDataset:
    """The original SIIM-ACR layout: DICOM files anywhere under ``root`` plus the label CSV.

    A file's ImageId is its SOP Instance UID (the file name without ``.dcm`` in the
    competition data). Several rows for one image are OR-ed; ``-1`` is an empty mask.
    Files named in the CSV but missing, corrupt, or with a mask that does not fit are
    skipped and listed in ``skipped``.
    """

    root: Path
    labels: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Sample]:
        import pydicom

        from training.rle import RLEError, merge
        from triage.dicom.read import to_radiograph
        from triage.errors import ReadError

        rows = read_label_csv(self.labels)
        files = {p.stem: p for p in Path(self.root).rglob("*.dcm")}
        for image_id in sorted(rows):
            path = files.get(image_id)
            if path is None:
                self._skip(image_id, "named in the label CSV, but no such .dcm file")
                continue
            try:
                ds = pydicom.dcmread(path)
                radiograph = to_radiograph(ds)
                mask = merge(rows[image_id], radiograph.pixels.shape)
            except (ReadError, pydicom.errors.InvalidDicomError, OSError) as exc:
                self._skip(str(path), f"unreadable: {exc}")
                continue
            except RLEError as exc:
                self._skip(str(path), f"label does not fit the image: {exc}")
                continue
            yield Sample.of_dicom(image_id, radiograph.pixels, mask, ds)

    def _skip(self, path: str, reason: str) -> None:
        log.warning("skipped %s: %s", path, reason)
        self.skipped.append((path, reason))
