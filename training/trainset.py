"""Network inputs and targets of a whole dataset, held in memory for cross-validation.

Every reader (phantoms, SIIM PNG, SIIM DICOM, DICOM + SEG) ends here: each image is
prepared once per stage with :func:`triage.preprocess.prepare`, the function the cascade
uses at inference, so training and inference never differ in preprocessing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm import tqdm

from training.datasets import Sample
from triage.preprocess import Normalisation, prepare, resize_mask


@dataclass(frozen=True, kw_only=True)
class TrainingSet:
    """Classifier inputs, segmenter inputs, target masks, labels and ids of N images.

    Masks are on the segmenter's grid. ``skipped`` lists (file, reason) for every file
    the reader passed over.
    """

    classifier_inputs: np.ndarray  # float32 (N, rows, cols)
    segmenter_inputs: np.ndarray  # float32 (N, rows, cols)
    masks: np.ndarray  # bool (N, rows, cols)
    labels: np.ndarray  # bool (N,)
    image_ids: tuple[str, ...]
    patient_ids: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    synthetic: bool = False

    def __post_init__(self) -> None:
        n = len(self.labels)
        sizes = {
            "classifier_inputs": len(self.classifier_inputs),
            "segmenter_inputs": len(self.segmenter_inputs),
            "masks": len(self.masks),
            "image_ids": len(self.image_ids),
            "patient_ids": len(self.patient_ids),
        }
        wrong = {k: v for k, v in sizes.items() if v != n}
        if wrong:
            raise ValueError(f"{n} labels but {wrong}")
        if self.masks.shape[1:] != self.segmenter_inputs.shape[1:]:
            raise ValueError(
                f"masks are {self.masks.shape[1:]}, segmenter inputs "
                f"{self.segmenter_inputs.shape[1:]}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def digest(self) -> str:
        """SHA-256 of the arrays and ids: the data hash recorded in a model package."""
        sha = hashlib.sha256()
        for array in (self.classifier_inputs, self.segmenter_inputs, self.masks, self.labels):
            sha.update(np.ascontiguousarray(array).tobytes())
        sha.update("\n".join(self.image_ids).encode())
        return sha.hexdigest()


def prepared(
    pixels: np.ndarray,
    mask: np.ndarray,
    *,
    classifier_size: tuple[int, int],
    segmenter_size: tuple[int, int],
    normalisation: Normalisation,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's classifier input, segmenter input and mask on the segmenter grid."""
    return (
        prepare(pixels, size=classifier_size, normalisation=normalisation),
        prepare(pixels, size=segmenter_size, normalisation=normalisation),
        resize_mask(mask, segmenter_size),
    )


def from_columns(
    rows: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, bool, str, str]],
    *,
    skipped: Sequence[tuple[str, str]] = (),
) -> TrainingSet:
    """Stack (classifier input, segmenter input, mask, label, image id, patient id) rows.

    Raises
    ------
    ValueError
        If there are no rows.
    """
    columns: tuple[list, ...] = ([], [], [], [], [], [])
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    if not columns[0]:
        raise ValueError("the dataset yielded no usable images")
    return TrainingSet(
        classifier_inputs=np.stack(columns[0]),
        segmenter_inputs=np.stack(columns[1]),
        masks=np.stack(columns[2]),
        labels=np.asarray(columns[3], dtype=bool),
        image_ids=tuple(columns[4]),
        patient_ids=tuple(columns[5]),
        skipped=tuple(skipped),
    )


def from_samples(
    samples: Iterable[Sample],
    *,
    classifier_size: tuple[int, int],
    segmenter_size: tuple[int, int],
    normalisation: Normalisation,
    skipped: Sequence[tuple[str, str]] | None = None,
) -> TrainingSet:
    """Prepare every sample a dataset reader yields.

    ``skipped`` is read after the samples are consumed, so pass the reader's own list.
    """

    synthetic = []

    def rows():
        for sample in tqdm(samples, desc="read", unit="img"):
            synthetic.append(sample.synthetic)
            inputs = prepared(
                sample.pixels,
                sample.mask,
                classifier_size=classifier_size,
                segmenter_size=segmenter_size,
                normalisation=normalisation,
            )
            yield (*inputs, sample.positive, sample.image_id, sample.patient_id)

    data = from_columns(rows())
    return replace(data, skipped=tuple(skipped or ()), synthetic=any(synthetic))
