"""Model packages: a folder holding ``manifest.json`` and the weight files it names.

The manifest describes both stages (architecture, parameters, weights), the input size
and normalisation, the operating point, what the package was trained on (with a
``synthetic`` flag and a data hash) and the metrics measured on held-out data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from triage.errors import PackageError
from triage.models.networks import Ensemble, NetworkSpec, build_network
from triage.postprocess import OperatingPoint
from triage.preprocess import Normalisation

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
STAGES = ("classifier", "segmenter")
REQUIRED_KEYS = (
    "format",
    "name",
    "version",
    "normalisation",
    "operating_point",
    "training",
    *STAGES,
)


def default_package_path() -> Path:
    """The package that ships inside the repository (trained on phantoms)."""
    return Path(__file__).resolve().parent / "default"


@dataclass(frozen=True, kw_only=True)
class ModelPackage:
    """A validated model package.

    Use :func:`load_package` to read one; the constructor checks values only.
    """

    path: Path
    name: str
    version: str
    classifier: NetworkSpec
    segmenter: NetworkSpec
    normalisation: Normalisation
    operating_point: OperatingPoint
    training: Mapping[str, Any]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.training.get("synthetic"), bool):
            raise PackageError(
                "training.synthetic must be true or false: say whether the package was "
                "trained on synthetic phantoms"
            )

    @property
    def synthetic(self) -> bool:
        """Whether the package was trained on synthetic data only."""
        return bool(self.training["synthetic"])

    @property
    def research_only(self) -> bool:
        """Whether outputs must say NOT FOR CLINICAL USE (synthetic or research package)."""
        return self.synthetic or bool(self.training.get("research", True))

    def spec(self, stage: str) -> NetworkSpec:
        """The network spec of ``stage`` ("classifier" or "segmenter")."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        return self.classifier if stage == "classifier" else self.segmenter

    def load_network(self, stage: str, device: str | torch.device = "cpu") -> torch.nn.Module:
        """Build ``stage``'s network, load its weights and put it in eval mode on ``device``.

        Raises
        ------
        PackageError
            If a weight file is missing or does not fit the architecture.
        """
        spec = self.spec(stage)
        members = []
        for name in spec.weights:
            net = build_network(spec)
            file = self.path / name
            try:
                state = torch.load(file, map_location="cpu", weights_only=True)
                net.load_state_dict(state)
            except FileNotFoundError as exc:
                raise PackageError(f"{stage} weight file {file} is missing") from exc
            except (RuntimeError, KeyError, ValueError) as exc:
                raise PackageError(
                    f"{stage} weights {file} do not fit {spec.architecture}: {exc}"
                ) from exc
            members.append(net)
        model = members[0] if len(members) == 1 else Ensemble(members)
        return model.to(device).eval()

    def manifest(self) -> dict[str, Any]:
        """Return the manifest as a JSON-ready dictionary."""
        return {
            "format": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "normalisation": self.normalisation.to_json(),
            "operating_point": self.operating_point.to_json(),
            "classifier": self.classifier.to_json(),
            "segmenter": self.segmenter.to_json(),
            "training": dict(self.training),
            "metrics": dict(self.metrics),
        }


def load_package(path: str | Path) -> ModelPackage:
    """Read and validate the model package in folder ``path``.

    Raises
    ------
    PackageError
        If the folder or manifest is missing, the JSON is invalid, a key is missing or
        malformed, the format is newer than this program, or a weight file is absent.
    """
    folder = Path(path)
    file = folder / MANIFEST
    if not folder.is_dir():
        raise PackageError(f"model package {folder} is not a folder")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PackageError(f"model package {folder} has no {MANIFEST}") from exc
    except json.JSONDecodeError as exc:
        raise PackageError(f"{file} is not valid JSON: {exc}") from exc
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise PackageError(f"{file} lacks {', '.join(missing)}")
    if data["format"] != FORMAT_VERSION:
        raise PackageError(
            f"{file} has format {data['format']!r}; this program reads format {FORMAT_VERSION}"
        )
    try:
        package = ModelPackage(
            path=folder,
            name=str(data["name"]),
            version=str(data["version"]),
            description=str(data.get("description", "")),
            classifier=NetworkSpec.from_json(data["classifier"]),
            segmenter=NetworkSpec.from_json(data["segmenter"]),
            normalisation=Normalisation.from_json(data["normalisation"]),
            operating_point=OperatingPoint.from_json(data["operating_point"]),
            training=dict(data["training"]),
            metrics=dict(data.get("metrics", {})),
        )
    except (TypeError, ValueError, IndexError) as exc:
        raise PackageError(f"{file} is malformed: {exc}") from exc
    for stage in STAGES:
        spec = package.spec(stage)
        if not spec.weights:
            raise PackageError(f"{file}: {stage} names no weight file")
        for name in spec.weights:
            if not (folder / name).is_file():
                raise PackageError(f"{file}: {stage} weight file {name} is missing")
    return package


def save_package(package: ModelPackage, weights: Mapping[str, Mapping[str, torch.Tensor]]) -> Path:
    """Write ``package`` to its folder: the weight files named in ``weights`` and the manifest.

    ``weights`` maps a file name (as named in the specs) to a state dict.
    """
    package.path.mkdir(parents=True, exist_ok=True)
    for name, state in weights.items():
        torch.save({k: v.detach().cpu() for k, v in state.items()}, package.path / name)
    text = json.dumps(package.manifest(), indent=2, sort_keys=False)
    (package.path / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return package.path
