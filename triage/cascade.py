"""The cascade: a classifier looks at every frontal image, a U-Net outlines the flagged ones.

Images from many studies are batched. An image the classifier does not flag gets an empty
mask and never reaches the U-Net; flagged images are segmented with horizontal-flip
averaging, post-processed on the network grid and resized to the source only when a
region survives.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from triage.dicom.read import Radiograph
from triage.models.package import ModelPackage
from triage.postprocess import area_mm2, laterality, low_res_mask, priority, to_source
from triage.preprocess import prepare

MODES = ("cascade", "segment_all")


@dataclass(frozen=True, kw_only=True)
class Result:
    """What the cascade found in one image.

    ``mask`` is a boolean array of the source rows×cols for positives and None otherwise.
    ``segmented`` says whether the U-Net ran on the image.
    """

    sop_instance_uid: str
    study_instance_uid: str
    probability: float
    segmented: bool
    positive: bool
    mask: np.ndarray | None
    area_mm2: float | None
    area_fraction: float
    laterality: str | None
    priority: float


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU.

    Raises
    ------
    ValueError
        If ``device`` is not auto, cpu or cuda[:N], or CUDA is asked for but absent.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" or device.startswith("cuda"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but no CUDA device is available")
        return torch.device(device)
    raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")


class Cascade:
    """Run a model package over batches of radiographs.

    Parameters
    ----------
    package
        The model package; both networks are loaded once, here.
    device
        ``auto``, ``cpu`` or ``cuda``.
    batch_size
        Images per forward pass.
    mode
        ``cascade`` (classifier gates the U-Net) or ``segment_all`` (the U-Net on every
        image, the classifier unused; the reference the cascade is measured against).
    """

    def __init__(
        self,
        package: ModelPackage,
        *,
        device: str = "auto",
        batch_size: int = 16,
        mode: str = "cascade",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.package = package
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.mode = mode
        self.classifier = package.load_network("classifier", self.device)
        self.segmenter = package.load_network("segmenter", self.device)
        #: Seconds spent per stage, summed over all calls of :meth:`run`.
        self.timings: dict[str, float] = defaultdict(float)
        #: Number of images the U-Net has seen, summed over all calls.
        self.segmented_images = 0

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.timings[stage] += time.perf_counter() - start

    def _forward(self, net: torch.nn.Module, batch: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(batch)[:, None]
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
            with torch.autocast("cuda"):
                return net(tensor).float()
        return net(tensor)

    def classify(self, inputs: np.ndarray) -> np.ndarray:
        """Classifier probabilities for a stack of network inputs (N, rows, cols)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(inputs), self.batch_size):
                logits = self._forward(self.classifier, inputs[start : start + self.batch_size])
                out.append(torch.sigmoid(logits.reshape(len(logits), -1)[:, 0]).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def segment(self, inputs: np.ndarray) -> np.ndarray:
        """U-Net probability maps with horizontal-flip averaging, shape (N, rows, cols)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(inputs), self.batch_size):
                batch = inputs[start : start + self.batch_size]
                plain = torch.sigmoid(self._forward(self.segmenter, batch))
                flipped = torch.sigmoid(self._forward(self.segmenter, batch[:, :, ::-1].copy()))
                prob = (plain + torch.flip(flipped, dims=[-1])) / 2
                out.append(prob[:, 0].cpu().numpy())
        self.segmented_images += len(inputs)
        size = self.package.segmenter.input_size
        return np.concatenate(out) if out else np.zeros((0, *size), dtype=np.float32)

    def _prepare(self, radiographs: Sequence[Radiograph], size: tuple[int, int]) -> np.ndarray:
        normalisation = self.package.normalisation
        with self._timed("preprocess"):
            return np.stack(
                [prepare(r.pixels, size=size, normalisation=normalisation) for r in radiographs]
            )

    def run(self, radiographs: Sequence[Radiograph]) -> list[Result]:
        """Analyse a batch of radiographs; returns one :class:`Result` per image, in order."""
        if not radiographs:
            return []
        op = self.package.operating_point
        if self.mode == "cascade":
            inputs = self._prepare(radiographs, self.package.classifier.input_size)
            with self._timed("classify"):
                probabilities = self.classify(inputs)
            chosen = np.flatnonzero(probabilities >= op.classifier_threshold)
        else:
            probabilities = np.zeros(len(radiographs), dtype=np.float32)
            chosen = np.arange(len(radiographs))
        maps: np.ndarray | list = []
        if len(chosen):
            flagged = self._prepare(
                [radiographs[int(i)] for i in chosen], self.package.segmenter.input_size
            )
            with self._timed("segment"):
                maps = self.segment(flagged)
        prob_maps = dict(zip(chosen.tolist(), maps, strict=True))
        results = []
        for index, radiograph in enumerate(radiographs):
            prob_map = prob_maps.get(index)
            if self.mode == "segment_all" and prob_map is not None:
                probabilities[index] = float(prob_map.max())
            results.append(self._result(radiograph, float(probabilities[index]), prob_map))
        return results

    def _result(
        self, radiograph: Radiograph, probability: float, prob_map: np.ndarray | None
    ) -> Result:
        op = self.package.operating_point
        mask = None
        if prob_map is not None:
            keep = low_res_mask(prob_map, op)
            if keep.any():
                with self._timed("resize"):
                    mask = to_source(prob_map, keep, radiograph.pixels.shape, op.pixel_threshold)
                if not mask.any():
                    mask = None
        positive = mask is not None
        fraction = float(np.count_nonzero(mask)) / mask.size if mask is not None else 0.0
        return Result(
            sop_instance_uid=radiograph.sop_instance_uid,
            study_instance_uid=radiograph.study_instance_uid,
            probability=probability,
            segmented=prob_map is not None,
            positive=positive,
            mask=mask,
            area_mm2=area_mm2(mask, radiograph.spacing_mm) if mask is not None else None,
            area_fraction=fraction,
            laterality=laterality(mask, radiograph.patient_orientation)
            if mask is not None
            else None,
            priority=priority(probability, fraction, positive),
        )
