"""Small untrained model packages for unit tests (real networks, random weights)."""

from __future__ import annotations

from pathlib import Path

import torch

from triage.models.networks import NetworkSpec, build_network
from triage.models.package import ModelPackage, save_package
from triage.postprocess import OperatingPoint
from triage.preprocess import Normalisation

CLASSIFIER = NetworkSpec(
    architecture="DenseNet",
    params={
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 1,
        "init_features": 8,
        "growth_rate": 4,
        "block_config": [1, 1],
    },
    input_size=(64, 64),
    weights=("classifier.pt",),
)
SEGMENTER = NetworkSpec(
    architecture="UNet",
    params={
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 1,
        "channels": [4, 8],
        "strides": [2],
        "num_res_units": 0,
    },
    input_size=(96, 96),
    weights=("segmenter.pt",),
)


def make_package(
    path: Path,
    *,
    operating_point: OperatingPoint | None = None,
    synthetic: bool = True,
    seed: int = 0,
    classifier_bias: float | None = None,
    segmenter_bias: float | None = None,
) -> ModelPackage:
    """Write a package with randomly initialised tiny networks to ``path``.

    ``classifier_bias`` / ``segmenter_bias`` set the final layer's bias to push every
    output towards one side (for gating tests), with the weights of that layer zeroed.
    """
    torch.manual_seed(seed)
    classifier, segmenter = build_network(CLASSIFIER), build_network(SEGMENTER)
    if classifier_bias is not None:
        _force_output(classifier, classifier_bias)
    if segmenter_bias is not None:
        _force_output(segmenter, segmenter_bias)
    package = ModelPackage(
        path=path,
        name="ptx-unit-test",
        version="0.0.1",
        classifier=CLASSIFIER,
        segmenter=SEGMENTER,
        normalisation=Normalisation(),
        operating_point=operating_point or OperatingPoint(),
        training={"dataset": "none", "synthetic": synthetic, "research": True},
    )
    save_package(
        package, {"classifier.pt": classifier.state_dict(), "segmenter.pt": segmenter.state_dict()}
    )
    return package


def _force_output(net: torch.nn.Module, bias: float) -> None:
    layers = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    outputs = [
        m
        for m in net.modules()
        if isinstance(m, layers) and getattr(m, "out_channels", getattr(m, "out_features", 0)) == 1
    ]
    with torch.no_grad():
        for layer in outputs:
            layer.weight.zero_()
            layer.bias.fill_(bias)
