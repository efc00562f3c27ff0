"""Score a model package on phantoms it has never seen, through the real cascade.

Each phantom goes the whole inference path: DICOM dataset, :func:`to_radiograph`,
:class:`triage.cascade.Cascade`, masks at the source resolution. The figures are the ones
the foundation issue asks for: classifier AUC and the competition mean Dice beside the
all-empty baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from training.datasets import Sample
from training.metrics import dice, empty_baseline, roc_auc, sensitivity_specificity
from training.phantom_data import phantom_radiograph
from triage.cascade import Cascade, Result
from triage.dicom.read import Radiograph
from triage.models.package import load_package
from triage.preprocess import resize

#: Seed of the held-out phantoms; training must never use it.
HELD_OUT_SEED = 777_000_001


#: Images whose thumbnails are kept for the report's examples.
EXAMPLE_POOL = 400
THUMBNAIL = (256, 256)


class Scorer:
    """Collects per-image outcomes of the cascade and turns them into the metrics."""

    def __init__(self) -> None:
        self.labels: list[bool] = []
        self.probabilities: list[float] = []
        self.positives: list[bool] = []
        self.dices: list[float] = []
        self.image_ids: list[str] = []
        self.thumbnails: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, truth: np.ndarray, result: Result, pixels: np.ndarray | None = None) -> None:
        """Score one image's result against its true mask (``pixels``: for the examples)."""
        predicted = result.mask if result.mask is not None else np.zeros_like(truth)
        self.labels.append(bool(truth.any()))
        self.probabilities.append(result.probability)
        self.positives.append(result.positive)
        self.dices.append(dice(truth, predicted))
        self.image_ids.append(result.sop_instance_uid)
        if pixels is not None and len(self.thumbnails) < EXAMPLE_POOL:
            self.thumbnails.append(
                (
                    resize(pixels, THUMBNAIL),
                    resize(truth.astype(np.float32), THUMBNAIL) >= 0.5,
                    resize(predicted.astype(np.float32), THUMBNAIL) >= 0.5,
                )
            )

    def metrics(self) -> dict[str, Any]:
        """Classifier AUC, competition mean Dice beside the all-empty baseline, and more."""
        labels = np.asarray(self.labels, dtype=bool)
        dices = np.asarray(self.dices)
        sensitivity, specificity = sensitivity_specificity(labels, self.positives)
        both = labels.any() and (~labels).any()
        return {
            "images": len(labels),
            "positives": int(labels.sum()),
            "classifier_auc": round(roc_auc(labels, self.probabilities), 4) if both else None,
            "mean_dice": round(float(dices.mean()), 4),
            "empty_baseline": round(empty_baseline(labels), 4),
            "dice_on_positives": round(float(dices[labels].mean()), 4) if labels.any() else None,
            "sensitivity": round(sensitivity, 4),
            "specificity": round(specificity, 4),
        }


def evaluate_on_phantoms(
    package_path: str | Path,
    *,
    images: int = 200,
    seed: int = HELD_OUT_SEED,
    prevalence: float = 0.3,
    sizes: tuple[int, int] = (512, 1536),
    device: str = "auto",
    batch: int = 20,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Run the cascade on ``images`` phantoms of ``seed`` and return the metrics.

    Pass a :class:`Scorer` to keep the per-image outcomes (for a report).
    """
    cascade = Cascade(load_package(package_path), device=device)
    scorer = scorer if scorer is not None else Scorer()
    with tqdm(total=images, desc="evaluate", unit="img") as bar:
        for start in range(0, images, batch):
            items = [
                phantom_radiograph(seed, i, prevalence=prevalence, sizes=sizes)
                for i in range(start, min(start + batch, images))
            ]
            results = cascade.run([radiograph for radiograph, _, _ in items])
            for (radiograph, phantom, _), result in zip(items, results, strict=True):
                scorer.add(phantom.mask, result, radiograph.pixels)
            bar.update(len(items))
    return {
        "seed": seed,
        "prevalence": prevalence,
        **scorer.metrics(),
        "segmented_images": cascade.segmented_images,
    }


def evaluate_samples(
    package_path: str | Path,
    samples: Iterable[Sample],
    *,
    device: str = "auto",
    batch: int = 16,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Run the cascade on dataset samples (pixels and true masks) and return the metrics."""
    cascade = Cascade(load_package(package_path), device=device)
    scorer = scorer if scorer is not None else Scorer()
    pending: list[Sample] = []

    def flush() -> None:
        results = cascade.run([_radiograph(s) for s in pending])
        for sample, result in zip(pending, results, strict=True):
            scorer.add(sample.mask, result, sample.pixels)
        pending.clear()

    for sample in tqdm(samples, desc="evaluate", unit="img"):
        pending.append(sample)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    if not scorer.labels:
        raise ValueError("the dataset yielded no images to score")
    return {**scorer.metrics(), "segmented_images": cascade.segmented_images}


def _radiograph(sample: Sample) -> Radiograph:
    return Radiograph(
        pixels=sample.pixels.astype(np.float32, copy=False),
        spacing_mm=None,
        photometric="MONOCHROME2",
        bits_stored=8,
        modality="CR",
        view_position=None,
        patient_orientation=None,
        sop_instance_uid=sample.image_id,
        sop_class_uid="",
        series_instance_uid="",
        study_instance_uid="",
    )


def evaluation_report(
    folder: Path, scorer: Scorer, metrics: dict[str, Any], *, title: str, examples: int = 8
) -> Path:
    """``report.html`` (ROC, Dice histogram, figures, examples) and ``metrics.json``."""
    from training.report import (
        Picture,
        Section,
        Table,
        dice_histogram_png,
        fmt,
        overlay_png,
        roc_png,
        write_report,
    )
    from training.train_report import pick_examples

    folder.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(scorer.labels, dtype=bool)
    dices = np.asarray(scorer.dices)
    images = []
    if labels.any() and (~labels).any():
        roc_png(
            folder / "roc.png",
            labels,
            np.asarray(scorer.probabilities),
            auc=metrics.get("classifier_auc"),
            threshold=float(metrics.get("classifier_threshold", 0.5)),
        )
        images.append(Picture(file="roc.png", caption="classifier ROC"))
    dice_histogram_png(folder / "dice-histogram.png", dices, labels)
    images.append(Picture(file="dice-histogram.png", caption="Dice per image"))
    pool = len(scorer.thumbnails)
    pictures = []
    picks = pick_examples(
        labels[:pool], np.asarray(scorer.positives[:pool]), dices[:pool], examples
    )
    for index, caption in picks:
        pixels, truth, predicted = scorer.thumbnails[index]
        name = f"example-{len(pictures) + 1}.png"
        overlay_png(folder / name, pixels, truth, predicted)
        pictures.append(
            Picture(
                file=name,
                caption=f"{caption}: Dice {dices[index]:.2f}, p={scorer.probabilities[index]:.2f}",
            )
        )
    rows = [[k, fmt(v)] for k, v in metrics.items() if not isinstance(v, list | dict)]
    sections = [
        Section(heading="Figures", tables=[Table(columns=["", ""], rows=rows)], images=images),
        Section(heading="Examples (green: reference, orange: model)", images=pictures),
    ]
    skipped = metrics.get("skipped") or []
    if skipped:
        sections.append(
            Section(
                heading="Skipped files",
                tables=[
                    Table(
                        columns=["file", "reason"], rows=[[s["file"], s["reason"]] for s in skipped]
                    )
                ],
            )
        )
    return write_report(folder, title=title, sections=sections, metrics=metrics)
