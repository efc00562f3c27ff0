"""MONAI networks built from a configuration.

A model package names each stage's architecture and its keyword arguments; this module is
the one place that turns such a description into a ``torch.nn.Module``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from monai.networks import nets

from triage.errors import PackageError

#: Architectures a package may name, by MONAI class name.
ARCHITECTURES: Mapping[str, Callable[..., torch.nn.Module]] = {
    "DenseNet": nets.DenseNet,
    "DenseNet121": nets.DenseNet121,
    "EfficientNetBN": nets.EfficientNetBN,
    "UNet": nets.UNet,
    "BasicUNet": nets.BasicUNet,
    "FlexibleUNet": nets.FlexibleUNet,
}


@dataclass(frozen=True, kw_only=True)
class NetworkSpec:
    """One stage's network: a MONAI architecture and its keyword arguments.

    Parameters
    ----------
    architecture
        A key of :data:`ARCHITECTURES`, for example ``"DenseNet"`` or ``"UNet"``.
    params
        Keyword arguments for the MONAI constructor (``spatial_dims``, ``in_channels``, ...).
    input_size
        Network input (rows, cols): images are resized to it before this stage.
    weights
        File names of the weights, relative to the package folder; several files form an
        ensemble whose outputs are averaged.

    Raises
    ------
    PackageError
        If the architecture is unknown or the input size is not two sizes >= 32.
    """

    architecture: str
    params: Mapping[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = (256, 256)
    weights: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            close = difflib.get_close_matches(self.architecture, ARCHITECTURES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise PackageError(
                f"architecture {self.architecture!r} is not supported; "
                f"use one of {sorted(ARCHITECTURES)}.{hint}"
            )
        size = tuple(self.input_size)
        if len(size) != 2 or not all(isinstance(v, int) and v >= 32 for v in size):
            raise PackageError(f"input_size must be two whole sizes >= 32, got {self.input_size!r}")

    def to_json(self) -> dict[str, Any]:
        """Return the manifest form of this spec."""
        return {
            "architecture": self.architecture,
            "params": dict(self.params),
            "input_size": list(self.input_size),
            "weights": list(self.weights),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NetworkSpec:
        """Read a spec from its manifest form.

        Raises
        ------
        PackageError
            If a key is missing or has the wrong type.
        """
        try:
            weights = data.get("weights", [])
            if isinstance(weights, str):
                weights = [weights]
            size = data["input_size"]
            return cls(
                architecture=str(data["architecture"]),
                params=dict(data.get("params", {})),
                input_size=(size[0], size[1]),
                weights=tuple(str(w) for w in weights),
            )
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise PackageError(f"network entry {data!r} is malformed: {exc}") from exc


def build_network(spec: NetworkSpec) -> torch.nn.Module:
    """Build the untrained network that ``spec`` describes.

    Raises
    ------
    PackageError
        If MONAI refuses the parameters.
    """
    try:
        return ARCHITECTURES[spec.architecture](**spec.params)
    except (TypeError, ValueError) as exc:
        raise PackageError(
            f"cannot build {spec.architecture} with parameters {dict(spec.params)}: {exc}"
        ) from exc


class Ensemble(torch.nn.Module):
    """Average the logits of several networks of the same shape of output."""

    def __init__(self, members: list[torch.nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members[0](x)
        for member in self.members[1:]:
            out = out + member(x)
        return out / len(self.members)
