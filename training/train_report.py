"""The report of a cross-validated training run: comparison, curves, examples."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from training.report import (
    Picture,
    Section,
    Table,
    dice_histogram_png,
    fmt,
    learning_curves_png,
    overlay_png,
    roc_png,
    write_report,
)


def training_report(
    folder: Path,
    *,
    data: Any,
    result: Any,
    metrics: Mapping[str, Any],
    package: Any,
    held_out: Mapping[str, Any] | None = None,
    examples: int = 8,
) -> Path:
    """The report of a cross-validated run (``data``: TrainingSet, ``result``:
    CrossValidation, ``package``: the exported ModelPackage)."""
    from triage.postprocess import OperatingPoint, low_res_mask

    folder.mkdir(parents=True, exist_ok=True)
    oof = result.out_of_fold
    op = OperatingPoint.from_json(metrics["operating_point"])
    per_image = metrics["per_image"]
    learning_curves_png(folder / "learning-curves.png", result.histories)
    roc_png(
        folder / "roc.png",
        data.labels,
        oof.probabilities,
        auc=metrics["classifier_auc"],
        threshold=op.classifier_threshold,
    )
    dice_histogram_png(folder / "dice-histogram.png", per_image["dice"], data.labels)
    pictures = []
    for index, caption in pick_examples(
        data.labels, per_image["positive"], per_image["dice"], examples
    ):
        found = (
            low_res_mask(oof.maps[index].astype(np.float32), op)
            if oof.probabilities[index] >= op.classifier_threshold
            else None
        )
        name = f"example-{len(pictures) + 1}.png"
        overlay_png(folder / name, data.segmenter_inputs[index], data.masks[index], found)
        pictures.append(
            Picture(
                file=name,
                caption=f"{caption}: {data.image_ids[index][-24:]}, "
                f"p={oof.probabilities[index]:.2f}, Dice {per_image['dice'][index]:.2f}",
            )
        )
    comparison = metrics["comparison"]
    columns = [
        "design",
        "mean Dice",
        "all-empty baseline",
        "Dice on positives",
        "sensitivity",
        "specificity",
        "U-Net share",
        "ms per image",
    ]
    rows = [
        [
            r["design"],
            fmt(r.get("mean_dice")),
            fmt(r["empty_baseline"]),
            fmt(r.get("dice_on_positives")),
            fmt(r.get("sensitivity")),
            fmt(r.get("specificity")),
            fmt(r.get("segmented")),
            fmt(r["ms_per_image"]),
        ]
        for r in comparison
    ]
    training = package.training
    notes = []
    if package.synthetic:
        notes.append(
            "Trained and scored on SYNTHETIC PHANTOMS: these figures say nothing about "
            "real radiographs. NOT FOR CLINICAL USE."
        )
    if data.skipped:
        notes.append(f"{len(data.skipped)} file(s) were skipped; see the last section.")
    sections = [
        Section(
            heading="Run",
            tables=[
                Table(
                    columns=["", ""],
                    rows=[
                        ["package", f"{package.name} {package.version}"],
                        ["dataset", training.get("dataset")],
                        ["images (positives)", f"{len(data)} ({int(data.labels.sum())})"],
                        ["patients", len(set(data.patient_ids))],
                        ["folds", training.get("folds")],
                        ["configuration", training["config"].get("description", "")],
                        ["command", training.get("command") or "–"],
                        ["data hash", training.get("data_hash")],
                        ["training time", f"{training.get('seconds', 0) / 60:.1f} min"],
                    ],
                )
            ],
        ),
        Section(
            heading="The dissertation's claim, out of fold",
            text=(
                "Every image scored by the models of the fold that never saw it, each design at "
                "its own best operating point. Compute is the measured inference time per image "
                "(U-Net with flip averaging); the cascade pays the U-Net only for the share of "
                "images its classifier passes."
            ),
            tables=[Table(columns=columns, rows=rows)],
        ),
        Section(
            heading="Operating point (chosen on out-of-fold predictions)",
            tables=[
                Table(
                    columns=["", ""],
                    rows=[[k, fmt(v)] for k, v in op.to_json().items()]
                    + [["required sensitivity", fmt(metrics["cascade"].get("min_sensitivity"))]],
                )
            ],
        ),
        Section(
            heading="Classifier and Dice",
            images=[
                Picture(file="roc.png", caption="out-of-fold ROC"),
                Picture(file="dice-histogram.png", caption="cascade Dice per image, out of fold"),
            ],
            tables=[
                Table(
                    columns=["fold", "images", "positives", "mean Dice", "classifier AUC"],
                    rows=[
                        [
                            f["fold"],
                            f["images"],
                            f["positives"],
                            fmt(f["mean_dice"]),
                            fmt(f["classifier_auc"]),
                        ]
                        for f in metrics["per_fold"]
                    ],
                )
            ],
        ),
        Section(
            heading="Learning curves",
            images=[Picture(file="learning-curves.png", caption="per fold and stage")],
        ),
        Section(heading="Examples (green: reference, orange: model)", images=pictures),
    ]
    if held_out:
        sections.append(
            Section(
                heading="Held-out phantoms through the whole cascade",
                text=(
                    "Phantoms from a seed never used in training, read through DICOM, "
                    "scored at source size."
                ),
                tables=[Table(columns=["", ""], rows=[[k, fmt(v)] for k, v in held_out.items()])],
            )
        )
    if data.skipped:
        sections.append(
            Section(
                heading="Skipped files",
                tables=[Table(columns=["file", "reason"], rows=[list(s) for s in data.skipped])],
            )
        )
    full = {
        **{k: v for k, v in metrics.items() if k != "per_image"},
        "held_out": held_out,
        "histories": result.histories,
        "milliseconds_per_image": oof.milliseconds,
        "skipped": [{"file": f, "reason": r} for f, r in data.skipped],
        "package": str(package.path),
        "training": dict(training),
    }
    return write_report(
        folder,
        title=f"Training report: {package.name} {package.version}",
        sections=sections,
        metrics=full,
        notes=notes,
    )


def pick_examples(
    labels: np.ndarray, positive: np.ndarray, dices: np.ndarray, count: int
) -> list[tuple[int, str]]:
    """Indices worth looking at: best, median and worst true positives, misses and false
    alarms, in that order, at most ``count``."""
    labels = np.asarray(labels, dtype=bool)
    hits = np.flatnonzero(labels & positive)
    hits = hits[np.argsort(-dices[hits], kind="stable")]
    chosen: list[tuple[int, str]] = []
    if len(hits):
        for where, name in ((0, "best"), (len(hits) // 2, "median"), (len(hits) - 1, "worst")):
            if hits[where] not in [c for c, _ in chosen]:
                chosen.append((int(hits[where]), f"{name} found"))
    chosen += [(int(i), "missed") for i in np.flatnonzero(labels & ~positive)[:2]]
    chosen += [(int(i), "false alarm") for i in np.flatnonzero(~labels & positive)[:2]]
    chosen += [(int(i), "correct negative") for i in np.flatnonzero(~labels & ~positive)[:1]]
    return chosen[:count]
