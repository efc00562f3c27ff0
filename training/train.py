"""Cross-validated training of the cascade, and the model package it exports.

Per fold (patients never split across folds): the classifier on all training images, the
segmenter on positive images only (the dissertation's "one case" U-Net) and, for the
comparison, a baseline segmenter on all images. Each network keeps its best epoch on an
inner validation split carved from the training folds (grouped by patient too), so the
held-out fold is touched only to predict it. The out-of-fold predictions of every image
then choose the operating point and score the three ways of using the networks.

The package is the ensemble of the fold models (no refit): its weights are the fold
models' weights, its operating point the one found out of fold.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import triage
from training.compare import compare
from training.config import TrainConfig
from training.fit import fit
from training.folds import FoldItem, load_folds, make_folds, save_folds
from training.metrics import roc_auc
from training.stages import classifier_stage, predict, segmenter_stage
from training.thresholds import apply_operating_point
from training.trainset import TrainingSet
from triage.models.package import ModelPackage, save_package

STAGES = ("classifier", "segmenter", "baseline")


@dataclass(frozen=True, kw_only=True)
class OutOfFold:
    """Every image's predictions by the models of the fold that did not train on it."""

    fold: np.ndarray  # int (N,)
    probabilities: np.ndarray  # float32 (N,)
    maps: np.ndarray  # float16 (N, rows, cols): positives-only segmenter, flip-averaged
    baseline_maps: np.ndarray | None  # float16, the all-images segmenter
    milliseconds: dict[str, float]  # per image: classifier, segmenter (with flip), baseline


@dataclass(frozen=True, kw_only=True)
class CrossValidation:
    """What a cross-validated run produced, before export."""

    folds: list[FoldItem]
    out_of_fold: OutOfFold
    states: dict[str, list[dict[str, torch.Tensor]]]  # stage -> one state per fold
    histories: dict[str, list[list[dict[str, float]]]]  # stage -> per fold, per epoch


def assign_folds(data: TrainingSet, config: TrainConfig, saved: Path | None) -> list[FoldItem]:
    """Folds read from ``saved`` when it exists (a resumed or repeated run), else made.

    Raises
    ------
    ValueError
        If the saved folds do not list exactly this dataset's images.
    """
    if saved is not None and saved.exists():
        items = load_folds(saved)
        if [i.image_id for i in items] != list(data.image_ids):
            raise ValueError(
                f"{saved} lists other images than this dataset; delete it or pass other folds"
            )
        return items
    return make_folds(
        data.image_ids, data.patient_ids, data.labels, folds=config.folds, seed=config.seed
    )


def inner_split(
    data: TrainingSet, train: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training images into fitting and validation sets, grouped by patient."""
    patients = len({data.patient_ids[i] for i in train})
    if patients < 2:
        raise ValueError("a fold's training images come from one patient: use fewer folds")
    parts = min(max(2, round(1 / fraction)), patients)
    items = make_folds(
        [data.image_ids[i] for i in train],
        [data.patient_ids[i] for i in train],
        data.labels[train],
        folds=parts,
        seed=seed,
    )
    inner = np.array([item.fold == 0 for item in items])
    return train[~inner], train[inner]


def cross_validate(
    data: TrainingSet,
    config: TrainConfig,
    *,
    checkpoints: Path,
    resume: bool = False,
    device: str | torch.device = "cpu",
) -> CrossValidation:
    """Train every fold's networks and predict the held-out fold with them."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    folds = assign_folds(data, config, checkpoints / "folds.csv" if resume else None)
    save_folds(folds, checkpoints / "folds.csv")
    fold_of = np.array([item.fold for item in folds])
    stages = STAGES if config.baseline else STAGES[:2]
    states: dict[str, list] = {s: [] for s in stages}
    histories: dict[str, list] = {s: [] for s in stages}
    n = len(data)
    probabilities = np.zeros(n, dtype=np.float32)
    maps = np.zeros(data.masks.shape, dtype=np.float16)
    baseline_maps = np.zeros(data.masks.shape, dtype=np.float16) if config.baseline else None
    seconds = dict.fromkeys(stages, 0.0)
    for k in range(config.folds):
        held_out = np.flatnonzero(fold_of == k)
        train, valid = inner_split(
            data, np.flatnonzero(fold_of != k), config.inner_validation, config.seed + k
        )
        for stage_name in stages:
            net, history = _fit_stage(
                stage_name, data, train, valid, config, k, checkpoints, resume, device
            )
            states[stage_name].append({n_: t.cpu() for n_, t in net.state_dict().items()})
            histories[stage_name].append(history)
            started = time.perf_counter()
            if stage_name == "classifier":
                out = predict(net, data.classifier_inputs[held_out], device=device)
                probabilities[held_out] = out.reshape(-1)
            else:
                out = predict(net, data.segmenter_inputs[held_out], device=device, flip=True)
                target = maps if stage_name == "segmenter" else baseline_maps
                assert target is not None
                target[held_out] = out[:, 0]
            seconds[stage_name] += time.perf_counter() - started
    return CrossValidation(
        folds=folds,
        out_of_fold=OutOfFold(
            fold=fold_of,
            probabilities=probabilities,
            maps=maps,
            baseline_maps=baseline_maps,
            milliseconds={s: round(1000 * v / n, 3) for s, v in seconds.items()},
        ),
        states=states,
        histories=histories,
    )


def _fit_stage(name, data, train, valid, config, k, checkpoints, resume, device):
    label = f"fold {k + 1}/{config.folds} {name}"
    seed = config.seed + 100 * k + STAGES.index(name)
    if name == "classifier":
        settings = config.classifier
        stage = classifier_stage(
            data, train, valid, settings, seed=seed, label=label, device=device
        )
    else:
        settings = config.segmenter
        if name == "baseline":
            settings = replace(settings, positive_fraction=None)
        stage = segmenter_stage(
            data,
            train,
            valid,
            settings,
            seed=seed,
            label=label,
            positives_only=name == "segmenter",
            device=device,
        )
    return fit(
        stage,
        settings,
        seed=seed,
        checkpoint=checkpoints / f"fold{k + 1}-{name}.pt",
        resume=resume,
        device=device,
        mixed_precision=config.mixed_precision,
    )


def out_of_fold_metrics(
    data: TrainingSet, result: CrossValidation, *, min_sensitivity: float = 0.0
) -> dict[str, Any]:
    """Classifier AUC, the operating point, and the comparison of the three designs."""
    oof = result.out_of_fold
    both = data.labels.any() and (~data.labels).any()
    comparison = compare(
        labels=data.labels,
        probabilities=oof.probabilities,
        maps=oof.maps,
        baseline_maps=oof.baseline_maps,
        masks=data.masks,
        milliseconds=oof.milliseconds,
        min_sensitivity=min_sensitivity,
    )
    op = comparison["operating_point"]
    positive, dices = apply_operating_point(
        op, probabilities=oof.probabilities, maps=oof.maps, masks=data.masks
    )
    per_fold = []
    for k in range(int(oof.fold.max()) + 1):
        members = oof.fold == k
        labels = data.labels[members]
        per_fold.append(
            {
                "fold": k + 1,
                "images": int(members.sum()),
                "positives": int(labels.sum()),
                "mean_dice": round(float(dices[members].mean()), 4),
                "classifier_auc": round(roc_auc(labels, oof.probabilities[members]), 4)
                if labels.any() and (~labels).any()
                else None,
            }
        )
    return {
        "images": len(data),
        "positives": int(data.labels.sum()),
        "classifier_auc": round(roc_auc(data.labels, oof.probabilities), 4) if both else None,
        "cascade": comparison["rows"][-1],
        "comparison": comparison["rows"],
        "per_fold": per_fold,
        "operating_point": op.to_json(),
        "per_image": {"positive": positive, "dice": dices},
    }


def export_package(
    out: Path,
    data: TrainingSet,
    config: TrainConfig,
    result: CrossValidation,
    metrics: dict[str, Any],
    *,
    dataset: dict[str, Any],
    started: float,
    command: str = "",
) -> ModelPackage:
    """Write the fold ensemble, the out-of-fold operating point and the metrics as a package."""
    from triage.postprocess import OperatingPoint

    k = config.folds
    classifier = replace(
        config.classifier.network, weights=tuple(f"classifier-fold{i + 1}.pt" for i in range(k))
    )
    segmenter = replace(
        config.segmenter.network, weights=tuple(f"segmenter-fold{i + 1}.pt" for i in range(k))
    )
    synthetic = bool(dataset.get("synthetic"))
    what = "SYNTHETIC PHANTOMS" if synthetic else f"the {dataset['dataset']} data"
    package = ModelPackage(
        path=Path(out),
        name=config.name,
        version=config.version,
        description=(
            f"Classifier + positives-only U-Net cascade, {k}-fold ensemble, trained on {what} "
            f"by `triage train` ({config.description}). "
            + (
                "It has never seen a real radiograph: NOT FOR CLINICAL USE."
                if synthetic
                else "A research model: NOT FOR CLINICAL USE."
            )
        ),
        classifier=classifier,
        segmenter=segmenter,
        normalisation=config.normalisation,
        operating_point=OperatingPoint.from_json(metrics["operating_point"]),
        training={
            **dataset,
            "synthetic": synthetic,
            "research": True,
            "images": len(data),
            "positives": int(data.labels.sum()),
            "skipped": len(data.skipped),
            "folds": k,
            "data_hash": f"sha256:{data.digest()}",
            "triage_version": triage.__version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),
            "command": command,
            "config": config.to_json(),
        },
        metrics={"out_of_fold": {k_: v for k_, v in metrics.items() if k_ != "per_image"}},
    )
    weights = {}
    for i in range(k):
        weights[classifier.weights[i]] = result.states["classifier"][i]
        weights[segmenter.weights[i]] = result.states["segmenter"][i]
    # Weights of an earlier package in the same folder would be mistaken for ours.
    for pattern in ("classifier*.pt", "segmenter*.pt"):
        for stale in Path(out).glob(pattern):
            if stale.name not in weights:
                stale.unlink()
    save_package(package, weights)
    tqdm.write(f"model package written to {package.path}")
    return package


def with_metrics(package: ModelPackage, held_out: dict[str, Any]) -> ModelPackage:
    """Return ``package`` with held-out metrics added (and save its manifest)."""
    metrics = dict(package.metrics)
    metrics["held_out"] = held_out
    updated = replace(package, metrics=metrics)
    save_package(updated, {})
    return updated
