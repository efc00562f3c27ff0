"""A minimal trainer for the cascade on phantoms (the full subsystem is a later issue).

Trains the classifier on all images and the U-Net on positive images only (the
dissertation's "one case" model), keeps the best epoch of each on a validation split,
searches the operating point on that split, evaluates the finished package through the
real cascade on phantoms from a seed never used in training, and writes a model package.
"""

from __future__ import annotations

import copy
import datetime
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai import transforms as mt
from monai.losses import DiceCELoss
from tqdm import tqdm

import triage
from training.metrics import dice, roc_auc
from training.phantom_data import PhantomSet, make_phantom_set
from training.thresholds import search_operating_point
from triage.models.networks import NetworkSpec, build_network
from triage.models.package import ModelPackage, save_package
from triage.preprocess import Normalisation

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class QuickConfig:
    """Settings of the minimal phantom trainer (defaults: the shipped package)."""

    name: str = "ptx-phantom-cascade"
    version: str = "0.1.0"
    images: int = 1600
    prevalence: float = 0.5
    validation_fraction: float = 0.2
    sizes: tuple[int, int] = (512, 1024)
    segmenter_crop: tuple[int, int] = (256, 256)
    classifier_epochs: int = 12
    segmenter_epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 3e-3
    seed: int = 20261204
    workers: int = 2
    classifier: NetworkSpec = field(
        default_factory=lambda: NetworkSpec(
            architecture="DenseNet",
            params={
                "spatial_dims": 2,
                "in_channels": 1,
                "out_channels": 1,
                "init_features": 16,
                "growth_rate": 8,
                "block_config": [2, 4, 6, 4],
            },
            input_size=(256, 256),
            weights=("classifier.pt",),
        )
    )
    segmenter: NetworkSpec = field(
        default_factory=lambda: NetworkSpec(
            architecture="UNet",
            params={
                "spatial_dims": 2,
                "in_channels": 1,
                "out_channels": 1,
                "channels": [16, 32, 64, 128, 256],
                "strides": [2, 2, 2, 2],
                "num_res_units": 2,
            },
            input_size=(512, 512),
            weights=("segmenter.pt",),
        )
    )
    normalisation: Normalisation = field(default_factory=Normalisation)


def augmentation(seed: int, keys: Sequence[str], crop: tuple[int, int] | None = None) -> mt.Compose:
    """Random flips, small affine changes and intensity changes.

    With ``crop``, a patch of that size is cut first, centred on the pneumothorax three
    times out of four (the U-Net is fully convolutional: it trains on patches and runs on
    the whole image).
    """
    keys = list(keys)
    modes = tuple("nearest" if k == "mask" else "bilinear" for k in keys)
    steps: list = []
    if crop is not None:
        steps.append(
            mt.RandCropByPosNegLabeld(
                keys, label_key="mask", spatial_size=crop, pos=3, neg=1, num_samples=1
            )
        )
    steps += [
        mt.RandFlipd(keys, prob=0.5, spatial_axis=1),
        mt.RandAffined(
            keys,
            prob=0.7,
            rotate_range=0.12,
            scale_range=0.1,
            translate_range=(12, 12),
            mode=modes,
            padding_mode="zeros",
        ),
        mt.RandAdjustContrastd(["image"], prob=0.3, gamma=(0.75, 1.35)),
        mt.RandGaussianNoised(["image"], prob=0.3, std=0.03),
    ]
    chain = mt.Compose(steps)
    chain.set_random_state(seed)
    return chain


def _batches(indices: np.ndarray, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(indices)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _augmented(images: np.ndarray, masks: np.ndarray | None, batch: np.ndarray, augment):
    """Augment the images (and masks) of ``batch``; returns tensors (B, 1, rows, cols)."""
    out_images, out_masks = [], []
    for i in batch:
        sample = {"image": images[i][None]}
        if masks is not None:
            sample["mask"] = masks[i][None].astype(np.float32)
        out = augment(sample)
        out = out[0] if isinstance(out, list) else out
        out_images.append(torch.as_tensor(np.asarray(out["image"]), dtype=torch.float32))
        if masks is not None:
            out_masks.append(torch.as_tensor(np.asarray(out["mask"]), dtype=torch.float32))
    return torch.stack(out_images), (torch.stack(out_masks) if out_masks else None)


def _fit(
    net: torch.nn.Module,
    *,
    batches: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor | None]],
    train: np.ndarray,
    epochs: int,
    config: QuickConfig,
    loss_of: Callable[
        [torch.nn.Module, torch.Tensor, torch.Tensor | None, np.ndarray], torch.Tensor
    ],
    score: Callable[[torch.nn.Module], float],
    label: str,
) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Train ``net`` and return the state of the epoch with the best validation score."""
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=steps, pct_start=0.15
    )
    best, best_score, history = copy.deepcopy(net.state_dict()), -math.inf, []
    for epoch in range(1, epochs + 1):
        net.train()
        losses = []
        bar = tqdm(list(_batches(train, config.batch_size, rng)), desc=f"{label} {epoch}/{epochs}")
        for batch in bar:
            images, masks = batches(batch)
            loss = loss_of(net, images, masks, batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        net.eval()
        value = score(net)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "validation": value})
        tqdm.write(f"{label} epoch {epoch}: loss {np.mean(losses):.4f}  validation {value:.4f}")
        if value > best_score:
            best, best_score = copy.deepcopy(net.state_dict()), value
    net.load_state_dict(best)
    return net.eval(), history


def predict(net: torch.nn.Module, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Sigmoid outputs of ``net`` for a stack of inputs (N, rows, cols)."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(inputs[start : start + batch_size])[:, None]
            out.append(torch.sigmoid(net(batch)).numpy())
    return np.concatenate(out)


def predict_flip(net: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
    """U-Net probability maps with horizontal-flip averaging, as the cascade computes them."""
    plain = predict(net, inputs, batch_size=8)[:, 0]
    flipped = predict(net, np.ascontiguousarray(inputs[:, :, ::-1]), batch_size=8)[:, 0, :, ::-1]
    return (plain + flipped) / 2


def train_classifier(data: PhantomSet, train: np.ndarray, valid: np.ndarray, config: QuickConfig):
    """Classifier on all training images; best epoch by validation AUC."""
    torch.manual_seed(config.seed)
    net = build_network(config.classifier)
    positives = max(int(data.labels[train].sum()), 1)
    weight = torch.tensor((len(train) - positives) / positives)
    criterion = torch.nn.BCEWithLogitsLoss(pos_weight=weight)
    labels = torch.from_numpy(data.labels.astype(np.float32))
    augment = augmentation(config.seed, ["image"])

    def loss_of(net, images, masks, batch):
        return criterion(net(images).reshape(-1), labels[batch])

    def score(net):
        scores = predict(net, data.classifier_inputs[valid]).reshape(-1)
        return roc_auc(data.labels[valid], scores)

    return _fit(
        net,
        batches=lambda batch: _augmented(data.classifier_inputs, None, batch, augment),
        train=train,
        epochs=config.classifier_epochs,
        config=config,
        loss_of=loss_of,
        score=score,
        label="classifier",
    )


def train_segmenter(data: PhantomSet, train: np.ndarray, valid: np.ndarray, config: QuickConfig):
    """U-Net on positive training images only; best epoch by validation Dice on positives."""
    torch.manual_seed(config.seed + 1)
    net = build_network(config.segmenter)
    criterion = DiceCELoss(sigmoid=True, batch=True)
    train_pos = train[data.labels[train]]
    valid_pos = valid[data.labels[valid]]
    augment = augmentation(config.seed + 1, ["image", "mask"], crop=config.segmenter_crop)

    def loss_of(net, images, masks, batch):
        return criterion(net(images), masks)

    def score(net):
        maps = predict(net, data.segmenter_inputs[valid_pos], batch_size=8)[:, 0]
        truths = data.masks[valid_pos]
        return float(np.mean([dice(m, p > 0.5) for m, p in zip(truths, maps, strict=True)]))

    return _fit(
        net,
        batches=lambda batch: _augmented(data.segmenter_inputs, data.masks, batch, augment),
        train=train_pos,
        epochs=config.segmenter_epochs,
        config=config,
        loss_of=loss_of,
        score=score,
        label="segmenter",
    )


def split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of image indices into training and validation."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    valid: list[int] = []
    for value in (False, True):
        idx = rng.permutation(np.flatnonzero(labels == value))
        cut = round(len(idx) * fraction)
        valid.extend(idx[:cut])
        train.extend(idx[cut:])
    return np.sort(np.asarray(train)), np.sort(np.asarray(valid))


def train_package(out: Path, config: QuickConfig, *, command: str = "") -> ModelPackage:
    """Train both stages on phantoms and write the model package to ``out``."""
    started = time.perf_counter()
    data = make_phantom_set(
        images=config.images,
        seed=config.seed,
        prevalence=config.prevalence,
        classifier_size=config.classifier.input_size,
        segmenter_size=config.segmenter.input_size,
        normalisation=config.normalisation,
        sizes=config.sizes,
        workers=config.workers,
    )
    train, valid = split(data.labels, config.validation_fraction, config.seed)
    classifier, cls_history = train_classifier(data, train, valid, config)
    segmenter, seg_history = train_segmenter(data, train, valid, config)
    probabilities = predict(classifier, data.classifier_inputs[valid]).reshape(-1)
    maps = predict_flip(segmenter, data.segmenter_inputs[valid])
    operating_point, search = search_operating_point(
        labels=data.labels[valid], probabilities=probabilities, maps=maps, masks=data.masks[valid]
    )
    package = ModelPackage(
        path=Path(out),
        name=config.name,
        version=config.version,
        description=(
            "Classifier + positives-only U-Net cascade trained on SYNTHETIC PHANTOMS by "
            "`triage train --dataset phantoms`. It has never seen a real radiograph: "
            "NOT FOR CLINICAL USE."
        ),
        classifier=config.classifier,
        segmenter=config.segmenter,
        normalisation=config.normalisation,
        operating_point=operating_point,
        training={
            "dataset": "phantoms",
            "synthetic": True,
            "research": True,
            "images": len(data.labels),
            "positives": int(data.labels.sum()),
            "seed": config.seed,
            "data_hash": f"sha256:{data.digest()}",
            "triage_version": triage.__version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),
            "command": command,
            "config": _jsonable(asdict(config)),
        },
        metrics={
            "validation": search,
            "classifier_history": cls_history,
            "segmenter_history": seg_history,
        },
    )
    save_package(
        package,
        {
            config.classifier.weights[0]: classifier.state_dict(),
            config.segmenter.weights[0]: segmenter.state_dict(),
        },
    )
    return package


def with_metrics(package: ModelPackage, held_out: dict[str, Any]) -> ModelPackage:
    """Return ``package`` with held-out metrics added (and save its manifest)."""
    metrics = dict(package.metrics)
    metrics["held_out"] = held_out
    updated = replace(package, metrics=metrics)
    save_package(updated, {})
    return updated


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)
