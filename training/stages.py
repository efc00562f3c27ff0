"""The three networks of a fold, as :class:`training.fit.Stage` objects, and inference on
stacks of prepared inputs.

- the classifier, on all training images, weighted BCE, scored by validation AUC;
- the segmenter, on positive images only (the dissertation's "one case" U-Net) unless
  its configuration draws negatives on a schedule, scored by Dice on validation positives;
- the baseline segmenter, the same network on all images as they come (as many per epoch
  as the positives-only U-Net sees, so both get the same number of steps), scored by the
  competition metric on all validation images: the model the cascade must beat.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai import transforms as mt
from monai.losses import DiceCELoss, DiceFocalLoss

from training.config import StageConfig
from training.fit import Stage, autocast
from training.metrics import dice, roc_auc
from training.trainset import TrainingSet
from triage.models.networks import build_network


def augmentation(keys: Sequence[str], crop: tuple[int, int] | None = None) -> mt.Compose:
    """Random flips, small affine changes and intensity changes (MONAI dictionary transforms).

    With ``crop``, a patch of that size is cut first, centred on the lesion three times
    out of four (on an image without one, anywhere).
    """
    keys = list(keys)
    modes = tuple("nearest" if k == "mask" else "bilinear" for k in keys)
    steps: list = []
    if crop is not None:
        steps.append(
            mt.RandCropByPosNegLabeld(
                keys,
                label_key="mask",
                spatial_size=crop,
                pos=3,
                neg=1,
                num_samples=1,
                allow_smaller=True,
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
    return mt.Compose(steps)


def _augmented(
    augment: mt.Compose, images: np.ndarray, masks: np.ndarray | None, batch: np.ndarray, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    augment.set_random_state(seed)
    out_images, out_masks = [], []
    for i in batch:
        sample = {"image": images[i][None]}
        if masks is not None:
            sample["mask"] = masks[i][None].astype(np.float32)
        with warnings.catch_warnings():
            # A negative image has no lesion to centre a crop on; MONAI says so each time.
            warnings.filterwarnings("ignore", message="Num foregrounds 0")
            out = augment(sample)
        out = out[0] if isinstance(out, list) else out
        out_images.append(torch.as_tensor(np.asarray(out["image"]), dtype=torch.float32))
        if masks is not None:
            out_masks.append(torch.as_tensor(np.asarray(out["mask"]), dtype=torch.float32))
    return torch.stack(out_images), (torch.stack(out_masks) if out_masks else None)


def _batch_seed(seed: int, epoch: int, batch: np.ndarray) -> int:
    return int((seed * 7919 + epoch * 104729 + int(batch[0]) * 31 + len(batch)) % (2**31))


def predict(
    net: torch.nn.Module,
    inputs: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    flip: bool = False,
) -> np.ndarray:
    """Sigmoid outputs of ``net`` for prepared inputs (N, rows, cols), as float32 on CPU.

    With ``flip``, the outputs are averaged with those of the mirrored image, mirrored
    back: what the cascade does for the segmenter.
    """
    device = torch.device(device)
    out = []
    net.eval()
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(inputs[start : start + batch_size]))
            batch = batch[:, None].to(device)
            result = torch.sigmoid(net(batch).float())
            if flip:
                mirrored = torch.sigmoid(net(torch.flip(batch, dims=[-1])).float())
                result = (result + torch.flip(mirrored, dims=[-1])) / 2
            out.append(result.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), dtype=np.float32)


def classifier_stage(
    data: TrainingSet,
    train: np.ndarray,
    valid: np.ndarray,
    settings: StageConfig,
    *,
    seed: int,
    label: str,
    device: torch.device | str = "cpu",
) -> Stage:
    """The classifier on all training images; validation AUC."""
    torch.manual_seed(seed)
    net = build_network(settings.network)
    positives = max(int(data.labels[train].sum()), 1)
    weight = torch.tensor((len(train) - positives) / positives, device=torch.device(device))
    criterion = torch.nn.BCEWithLogitsLoss(pos_weight=weight)
    labels = torch.from_numpy(data.labels.astype(np.float32))
    augment = augmentation(["image"])

    def batch(indices: np.ndarray, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        seed_ = _batch_seed(seed, epoch, indices)
        images, _ = _augmented(augment, data.classifier_inputs, None, indices, seed_)
        return images, labels[indices]

    def score(net: torch.nn.Module) -> float:
        scores = predict(net, data.classifier_inputs[valid], device=device).reshape(-1)
        truth = data.labels[valid]
        if truth.all() or not truth.any():
            return -float(np.mean((scores - truth) ** 2))
        return roc_auc(truth, scores)

    return Stage(
        label=label,
        net=net,
        epoch_indices=lambda epoch, rng: train,
        batch=batch,
        loss=lambda out, target: criterion(out.reshape(-1), target),
        score=score,
    )


def segmenter_stage(
    data: TrainingSet,
    train: np.ndarray,
    valid: np.ndarray,
    settings: StageConfig,
    *,
    seed: int,
    label: str,
    positives_only: bool,
    device: torch.device | str = "cpu",
) -> Stage:
    """A segmenter on positives only (or on a positive-sampling schedule), or on everything.

    The positives-only segmenter is scored by Dice on validation positives (it is never
    asked about negatives); one that sees negatives is scored by the competition metric on
    all validation images.
    """
    torch.manual_seed(seed)
    net = build_network(settings.network)
    if settings.loss == "dice-focal":
        criterion: torch.nn.Module = DiceFocalLoss(sigmoid=True, batch=True)
    else:
        criterion = DiceCELoss(sigmoid=True, batch=True)
    has_lesion = data.masks.reshape(len(data), -1).any(axis=1)
    train_pos = train[has_lesion[train]]
    train_neg = train[~has_lesion[train]]
    if len(train_pos) == 0:
        raise ValueError(f"{label}: no positive image with a visible lesion to train on")
    augment = augmentation(["image", "mask"], crop=settings.crop)
    # With no positive in the validation split, score everything rather than nothing.
    positives_only_score = positives_only and bool(has_lesion[valid].any())
    scored = valid[has_lesion[valid]] if positives_only_score else valid
    epoch_indices = _sampler(train, train_pos, train_neg, settings, positives_only)

    def batch(indices: np.ndarray, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        seed_ = _batch_seed(seed, epoch, indices)
        images, masks = _augmented(augment, data.segmenter_inputs, data.masks, indices, seed_)
        assert masks is not None
        return images, masks

    def score(net: torch.nn.Module) -> float:
        maps = predict(net, data.segmenter_inputs[scored], device=device, batch_size=8)[:, 0]
        truths = data.masks[scored]
        return float(np.mean([dice(m, p > 0.5) for m, p in zip(truths, maps, strict=True)]))

    return Stage(
        label=label,
        net=net,
        epoch_indices=epoch_indices,
        batch=batch,
        loss=lambda out, target: criterion(out, target),
        score=score,
    )


def _sampler(train, train_pos, train_neg, settings: StageConfig, positives_only: bool):
    """Which images an epoch draws: positives only, all, or a positive-sampling schedule."""
    if positives_only and settings.positive_fraction is None:
        return lambda epoch, rng: train_pos
    if positives_only and len(train_neg):
        start, end = settings.positive_fraction  # type: ignore[misc]
        size = len(train)

        def scheduled(epoch: int, rng: np.random.Generator) -> np.ndarray:
            share = start + (end - start) * (epoch - 1) / max(1, settings.epochs - 1)
            n_pos = round(share * size)
            return np.concatenate(
                [
                    rng.choice(train_pos, n_pos, replace=n_pos > len(train_pos)),
                    rng.choice(train_neg, size - n_pos, replace=size - n_pos > len(train_neg)),
                ]
            )

        return scheduled
    # The all-images baseline draws as many images per epoch as the positives-only U-Net
    # sees, uniformly from all: the same number of gradient steps, a different diet.
    return lambda epoch, rng: rng.choice(train, size=len(train_pos), replace=False)
