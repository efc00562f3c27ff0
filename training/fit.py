"""The epoch loop shared by every stage: AdamW with a cosine schedule, mixed precision on
CUDA, a checkpoint after every epoch, ``--resume``, early stopping and checkpoint averaging.

Every epoch reseeds its own random streams from (seed, epoch), so a run resumed after an
interruption draws the same batches and augmentations as one that never stopped.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training.config import StageConfig

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class Stage:
    """What the loop needs to know about one network's training.

    Parameters
    ----------
    label
        Name in progress bars and logs, e.g. ``fold 2/5 segmenter``.
    net
        The network, freshly built (or about to be restored from a checkpoint).
    epoch_indices
        Image indices to train on in an epoch, given the epoch number and its generator.
    batch
        CPU tensors (inputs, targets) for a batch of indices, augmented.
    loss
        Loss of the network's outputs against the targets.
    score
        Validation score of the network (higher is better), in eval mode.
    """

    label: str
    net: torch.nn.Module
    epoch_indices: Callable[[int, np.random.Generator], np.ndarray]
    batch: Callable[[np.ndarray, int], tuple[torch.Tensor, torch.Tensor]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    score: Callable[[torch.nn.Module], float]


def autocast(device: torch.device, enabled: bool = True):
    """bfloat16 autocast on CUDA (no loss scaling needed); nothing on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def fit(
    stage: Stage,
    settings: StageConfig,
    *,
    seed: int,
    checkpoint: Path,
    resume: bool = False,
    device: torch.device | str = "cpu",
    mixed_precision: bool = True,
) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Train ``stage.net`` and return it (best epoch, or the average of the best) with
    the per-epoch history.

    With ``resume``, a checkpoint of a finished stage is loaded without training, and an
    unfinished one continues at the epoch after the last one saved.
    """
    device = torch.device(device)
    net = stage.net.to(device)
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    steps_per_epoch = math.ceil(
        len(stage.epoch_indices(1, np.random.default_rng(0))) / settings.batch_size
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=settings.learning_rate,
        total_steps=settings.epochs * steps_per_epoch,
        pct_start=0.15,
        anneal_strategy="cos",
    )
    progress: dict[str, Any] = {"epoch": 0, "history": [], "best": [], "bad_epochs": 0}
    if resume and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
        if saved["finished"]:
            net.load_state_dict(saved["final"])
            tqdm.write(f"{stage.label}: finished earlier, loaded from {checkpoint}")
            return net.eval(), saved["history"]
        net.load_state_dict(saved["net"])
        optimiser.load_state_dict(saved["optimiser"])
        schedule.load_state_dict(saved["schedule"])
        progress = {k: saved[k] for k in progress}
        tqdm.write(f"{stage.label}: resuming after epoch {progress['epoch']}")
    for epoch in range(progress["epoch"] + 1, settings.epochs + 1):
        started = time.perf_counter()
        best_so_far = max((r["validation"] for r in progress["history"]), default=None)
        loss = _train_epoch(
            stage, net, optimiser, schedule, settings, seed, epoch, device, mixed_precision,
            best_so_far,
        )  # fmt: skip
        net.eval()
        with torch.inference_mode(), autocast(device, mixed_precision):
            value = float(stage.score(net))
        _remember(progress, epoch, loss, value, net, settings.average_best)
        row = progress["history"][-1]
        row["seconds"] = round(time.perf_counter() - started, 2)
        best = max(progress["history"], key=lambda r: r["validation"])
        tqdm.write(
            f"{stage.label} epoch {epoch}/{settings.epochs}: loss {loss:.4f}  "
            f"validation {value:.4f}  best {best['validation']:.4f} (epoch {best['epoch']})  "
            f"{row['seconds']:.1f} s"
        )
        stop = bool(settings.patience) and progress["bad_epochs"] >= settings.patience
        if stop or epoch == settings.epochs:
            break
        _save(
            checkpoint,
            {
                **progress,
                "finished": False,
                "net": net.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
            },
        )
    final = _average([state for _, state in progress["best"]])
    net.load_state_dict(final)
    _save(checkpoint, {**progress, "finished": True, "final": final})
    return net.eval(), progress["history"]


def _train_epoch(
    stage, net, optimiser, schedule, settings, seed, epoch, device, mixed_precision, best
):
    torch.manual_seed(seed * 1000 + epoch)
    rng = np.random.default_rng([seed, epoch])
    indices = rng.permutation(stage.epoch_indices(epoch, rng))
    batches = [
        indices[i : i + settings.batch_size] for i in range(0, len(indices), settings.batch_size)
    ]
    net.train()
    losses: list[float] = []
    bar = tqdm(batches, desc=f"{stage.label} {epoch}/{settings.epochs}", unit="batch", leave=False)
    for batch in bar:
        inputs, targets = stage.batch(batch, epoch)
        pin = device.type == "cuda"
        inputs = (inputs.pin_memory() if pin else inputs).to(device, non_blocking=pin)
        targets = (targets.pin_memory() if pin else targets).to(device, non_blocking=pin)
        with autocast(device, mixed_precision):
            loss = stage.loss(net(inputs).float(), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        shown = {"loss": f"{np.mean(losses[-20:]):.4f}"}
        if best is not None:
            shown["best validation"] = f"{best:.4f}"
        bar.set_postfix(shown)
    return float(np.mean(losses))


def _remember(progress, epoch, loss, value, net, keep) -> None:
    """Append the epoch to the history and keep the ``keep`` best states."""
    progress["epoch"] = epoch
    previous = max((r["validation"] for r in progress["history"]), default=-math.inf)
    progress["history"].append({"epoch": epoch, "loss": loss, "validation": value})
    progress["bad_epochs"] = 0 if value > previous else progress["bad_epochs"] + 1
    state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
    best = progress["best"] + [(value, state)]
    best.sort(key=lambda item: -item[0])
    progress["best"] = best[:keep]


def _average(states: list[State]) -> State:
    """The element-wise mean of floating-point tensors (counters come from the best)."""
    if len(states) == 1:
        return copy.deepcopy(states[0])
    out: State = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            out[key] = torch.stack([s[key] for s in states]).mean(dim=0)
        else:
            out[key] = value.clone()
    return out


def _save(path: Path, content: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(content, partial)
    os.replace(partial, path)
