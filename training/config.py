"""Training configurations: ``cpu-small`` (the default) and ``gpu-quality``.

A configuration is a frozen record of everything a run needs besides its data: the
network of each stage, epochs, batch size, optimiser settings, loss, augmentation crop,
sampling schedule, early stopping and checkpoint averaging. ``--epochs`` and friends
replace single fields; the record written into the package says what actually ran.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from triage.models.networks import NetworkSpec
from triage.preprocess import Normalisation

SEGMENTER_LOSSES = ("dice-ce", "dice-focal")


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """How one network is trained.

    Parameters
    ----------
    network
        Architecture, parameters and input size (rows, cols) of the network.
    epochs
        Maximum number of epochs.
    patience
        Stop after this many epochs without a better validation score (0: never).
    crop
        Train on random patches of this size (centred on the lesion three times in four);
        the segmenter is fully convolutional and runs on the whole image at inference.
    loss
        Segmentation loss: ``dice-ce`` (BCE + Dice) or ``dice-focal``. Ignored for the
        classifier, which uses BCE weighted by the class ratio.
    positive_fraction
        For a segmenter trained on all images: the share of positive images drawn per
        epoch, going linearly from the first value to the second. ``None``: images are
        drawn as they come.
    average_best
        Average the weights of this many best epochs (1: keep the best epoch).
    """

    network: NetworkSpec
    epochs: int
    batch_size: int = 16
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 0
    crop: tuple[int, int] | None = None
    loss: str = "dice-ce"
    positive_fraction: tuple[float, float] | None = None
    average_best: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.loss not in SEGMENTER_LOSSES:
            raise ValueError(f"loss must be one of {SEGMENTER_LOSSES}, got {self.loss!r}")
        if self.average_best < 1:
            raise ValueError(f"average_best must be >= 1, got {self.average_best}")
        if self.positive_fraction is not None and not all(
            0.0 < f <= 1.0 for f in self.positive_fraction
        ):
            raise ValueError(f"positive_fraction must lie in (0, 1], got {self.positive_fraction}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A whole cross-validated run.

    ``segmenter`` is the dissertation's positives-only U-Net unless its
    ``positive_fraction`` is set (then it sees negatives too, on a schedule);
    ``baseline`` is the same network trained on all images as they come, for the
    comparison the report makes. ``images``, ``prevalence`` and ``sizes`` describe
    phantoms and are ignored for real data.
    """

    name: str
    version: str = "0.2.0"
    description: str = ""
    folds: int = 5
    seed: int = 20261204
    inner_validation: float = 0.15
    classifier: StageConfig
    segmenter: StageConfig
    baseline: bool = True
    images: int = 1000
    prevalence: float = 0.5
    sizes: tuple[int, int] = (512, 1024)
    normalisation: Normalisation = field(default_factory=Normalisation)
    mixed_precision: bool = True

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if not 0.0 < self.inner_validation < 0.5:
            raise ValueError(f"inner_validation must lie in (0, 0.5), got {self.inner_validation}")

    def with_epochs(self, epochs: int) -> TrainConfig:
        """The same configuration with every stage capped at ``epochs``."""
        return replace(
            self,
            classifier=replace(self.classifier, epochs=epochs),
            segmenter=replace(self.segmenter, epochs=epochs),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record of the configuration (for the manifest and the report)."""
        return {k: jsonable(getattr(self, k)) for k in self.__dataclass_fields__}


def _densenet(size: int) -> NetworkSpec:
    return NetworkSpec(
        architecture="DenseNet",
        params={
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 1,
            "init_features": 16,
            "growth_rate": 8,
            "block_config": [2, 4, 6, 4],
        },
        input_size=(size, size),
        weights=("classifier.pt",),
    )


def _unet(size: int) -> NetworkSpec:
    return NetworkSpec(
        architecture="UNet",
        params={
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 1,
            "channels": [16, 32, 64, 128, 256],
            "strides": [2, 2, 2, 2],
            "num_res_units": 1,
        },
        input_size=(size, size),
        weights=("segmenter.pt",),
    )


def cpu_small() -> TrainConfig:
    """Minutes on two CPU cores with phantoms: 256 px, small networks, 5 folds."""
    return TrainConfig(
        name="ptx-phantom-cascade",
        description="cpu-small: DenseNet classifier and UNet segmenter at 256 px",
        classifier=StageConfig(network=_densenet(256), epochs=8, patience=3),
        segmenter=StageConfig(
            network=_unet(256),
            epochs=32,
            batch_size=8,
            patience=10,
            crop=(128, 128),
            loss="dice-ce",
        ),
    )


def gpu_quality() -> TrainConfig:
    """After the winning SIIM-ACR recipe, within what can be built without downloads.

    512 px, an EfficientNet-B0 classifier, a FlexibleUNet with an EfficientNet-B4
    encoder, Dice + focal loss, positive sampling going from 80 % to 40 % of each epoch,
    flip averaging at inference and the average of the three best checkpoints. The
    winners started from ImageNet weights and went up to 1024 px; nothing can be
    downloaded here, so the encoders start from random weights.
    """
    classifier = NetworkSpec(
        architecture="EfficientNetBN",
        params={
            "model_name": "efficientnet-b0",
            "pretrained": False,
            "spatial_dims": 2,
            "in_channels": 1,
            "num_classes": 1,
        },
        input_size=(512, 512),
        weights=("classifier.pt",),
    )
    segmenter = NetworkSpec(
        architecture="FlexibleUNet",
        params={
            "in_channels": 1,
            "out_channels": 1,
            "backbone": "efficientnet-b4",
            "pretrained": False,
            "spatial_dims": 2,
        },
        input_size=(512, 512),
        weights=("segmenter.pt",),
    )
    return TrainConfig(
        name="ptx-cascade-quality",
        description="gpu-quality: EfficientNet-B0 classifier, FlexibleUNet-B4 at 512 px",
        images=4000,
        classifier=StageConfig(
            network=classifier, epochs=30, batch_size=32, learning_rate=1e-3, patience=8
        ),
        segmenter=StageConfig(
            network=segmenter,
            epochs=40,
            batch_size=16,
            learning_rate=1e-3,
            patience=10,
            loss="dice-focal",
            positive_fraction=(0.8, 0.4),
            average_best=3,
        ),
    )


CONFIGS = {"cpu-small": cpu_small, "gpu-quality": gpu_quality}


def get_config(name: str) -> TrainConfig:
    """The configuration called ``name``.

    Raises
    ------
    ValueError
        If there is no such configuration (with the closest name, if any).
    """
    try:
        return CONFIGS[name]()
    except KeyError:
        close = difflib.get_close_matches(name, list(CONFIGS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown configuration {name!r}; choose from {', '.join(CONFIGS)}.{hint}"
        ) from None


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: records, mappings, sequences, NumPy values."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)
