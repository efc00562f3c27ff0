"""Cross-validation folds: stratified by label, grouped by patient, saved as CSV.

No patient's images are split across folds (the dissertation's internal CV leaked exactly
that way), and each fold gets about the same share of positive images.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, kw_only=True)
class FoldItem:
    """One image's place in the folds."""

    image_id: str
    patient_id: str
    positive: bool
    fold: int


def make_folds(
    image_ids: Sequence[str],
    patient_ids: Sequence[str],
    labels: Sequence[bool],
    *,
    folds: int = 5,
    seed: int = 0,
) -> list[FoldItem]:
    """Assign each image to a fold, keeping patients whole and positives balanced.

    Patients are dealt, largest first, to the fold that is furthest below its share of
    positives (for patients with a positive image) or of images (for the others).

    Raises
    ------
    ValueError
        If the sequences differ in length or there are fewer patients than folds.
    """
    if not len(image_ids) == len(patient_ids) == len(labels):
        raise ValueError("image_ids, patient_ids and labels must have the same length")
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    images_of: dict[str, list[int]] = defaultdict(list)
    for index, patient in enumerate(patient_ids):
        images_of[patient].append(index)
    if len(images_of) < folds:
        raise ValueError(f"{len(images_of)} patients cannot fill {folds} folds")
    rng = np.random.default_rng(seed)
    patients = list(images_of)
    rng.shuffle(patients)
    patients.sort(key=lambda p: -len(images_of[p]))  # stable: shuffled within equal sizes
    counts = np.zeros(folds)
    positives = np.zeros(folds)
    fold_of: dict[str, int] = {}
    for patient in patients:
        members = images_of[patient]
        n_pos = sum(bool(labels[i]) for i in members)
        load = positives if n_pos else counts
        fold = int(np.argmin(load + 1e-6 * counts))
        fold_of[patient] = fold
        counts[fold] += len(members)
        positives[fold] += n_pos
    return [
        FoldItem(
            image_id=str(image_ids[i]),
            patient_id=str(patient_ids[i]),
            positive=bool(labels[i]),
            fold=fold_of[patient_ids[i]],
        )
        for i in range(len(image_ids))
    ]


def save_folds(items: Sequence[FoldItem], path: Path) -> Path:
    """Write the folds as CSV (image_id, patient_id, positive, fold) so a run can be repeated."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "patient_id", "positive", "fold"])
        for item in items:
            writer.writerow([item.image_id, item.patient_id, int(item.positive), item.fold])
    return path


def load_folds(path: Path) -> list[FoldItem]:
    """Read folds written by :func:`save_folds`."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            FoldItem(
                image_id=row["image_id"],
                patient_id=row["patient_id"],
                positive=row["positive"] == "1",
                fold=int(row["fold"]),
            )
            for row in csv.DictReader(handle)
        ]
