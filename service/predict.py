"""Offline prediction over files: the engine behind ``triage predict``.

Reads DICOM files, keeps the eligible frontal chest images, runs them through the cascade
in batches, writes a SEG per positive image and a ``results.json`` for all inputs. A bad
file is reported and the run goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from PIL import Image
from pydicom import Dataset
from tqdm import tqdm

from service.images import Loaded, load_image
from service.tables import render_table
from triage.cascade import Cascade, Result
from triage.dicom.read import Radiograph
from triage.dicom.seg import Algorithm, build_segmentation, write_segmentation
from triage.overlay import overlay_rgb

#: Files a folder walk passes over: our own outputs and common non-DICOM companions.
IGNORED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".json", ".csv", ".txt", ".md", ".html"})
STATUSES = ("analysed", "skipped", "error")


@dataclass(frozen=True, kw_only=True)
class FileResult:
    """The outcome for one input file, as written to ``results.json``."""

    path: str
    status: str
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    reason: str | None = None
    probability: float | None = None
    positive: bool | None = None
    area_mm2: float | None = None
    laterality: str | None = None
    priority: float | None = None
    seg_path: str | None = None
    overlay_path: str | None = None


def find_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of candidate files.

    Named files are always kept; inside folders, hidden files and files with a suffix in
    :data:`IGNORED_SUFFIXES` are passed over.

    Raises
    ------
    FileNotFoundError
        If a named path does not exist.
    """
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_file():
            found.append(item)
        elif item.is_dir():
            found.extend(
                p
                for p in sorted(item.rglob("*"))
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() not in IGNORED_SUFFIXES
            )
        else:
            raise FileNotFoundError(f"{item} does not exist")
    return found


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Predictor:
    """Analyse files with a cascade and write SEGs (and optionally overlays) to ``out_dir``."""

    def __init__(self, cascade: Cascade, out_dir: Path, *, overlays: bool = False) -> None:
        self.cascade = cascade
        self.out_dir = Path(out_dir)
        self.overlays = overlays
        self.algorithm = Algorithm.from_package(cascade.package)

    def run(self, files: Sequence[Path], *, progress: bool = True) -> list[FileResult]:
        """Analyse ``files`` and write ``results.json``; returns one result per file."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        results: list[FileResult] = []
        with tqdm(total=len(files), desc="predict", unit="img", disable=not progress) as bar:
            for chunk in _chunks(files, self.cascade.batch_size):
                results.extend(self._run_chunk(chunk))
                bar.update(len(chunk))
        self._write_results(results)
        return results

    def _run_chunk(self, files: Sequence[Path]) -> list[FileResult]:
        outcomes: dict[int, FileResult] = {}
        ready = []
        for index, path in enumerate(files):
            outcome = self._load(path)
            if isinstance(outcome, FileResult):
                outcomes[index] = outcome
            else:
                ready.append((index, path, *outcome))
        analysed = self.cascade.run([radiograph for _, _, _, radiograph in ready])
        for (index, path, ds, radiograph), result in zip(ready, analysed, strict=True):
            outcomes[index] = self._finish(path, ds, radiograph, result)
        return [outcomes[i] for i in range(len(files))]

    def _load(self, path: Path) -> tuple[Dataset, Radiograph] | FileResult:
        loaded = load_image(path)
        if isinstance(loaded, Loaded):
            return loaded.dataset, loaded.radiograph
        return FileResult(
            path=str(path),
            status=loaded.status,
            reason=loaded.reason,
            sop_instance_uid=loaded.sop_instance_uid,
            study_instance_uid=loaded.study_instance_uid,
        )

    def _finish(self, path: Path, ds, radiograph, result: Result) -> FileResult:
        outcome = FileResult(
            path=str(path),
            status="analysed",
            sop_instance_uid=result.sop_instance_uid,
            study_instance_uid=result.study_instance_uid,
            probability=round(result.probability, 4),
            positive=result.positive,
            area_mm2=None if result.area_mm2 is None else round(result.area_mm2, 1),
            laterality=result.laterality,
            priority=result.priority,
        )
        if result.positive and result.mask is not None:
            seg = build_segmentation(ds, result.mask, self.algorithm)
            seg_path = self.out_dir / f"{result.sop_instance_uid}.seg.dcm"
            write_segmentation(seg, seg_path)
            outcome = replace(outcome, seg_path=str(seg_path))
        if self.overlays:
            picture = overlay_rgb(radiograph.pixels, result.mask)
            overlay_path = self.out_dir / f"{result.sop_instance_uid}.overlay.png"
            Image.fromarray(picture).save(overlay_path)
            outcome = replace(outcome, overlay_path=str(overlay_path))
        return outcome

    def _write_results(self, results: Sequence[FileResult]) -> Path:
        target = self.out_dir / "results.json"
        tmp = target.with_name(".results.json.tmp")
        tmp.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return target


def format_table(results: Sequence[FileResult]) -> str:
    """A fixed-width table of results for the terminal."""
    header = ("file", "status", "prob", "ptx", "area cm²", "side", "priority", "reason")
    rows = [header]
    for r in results:
        rows.append(
            (
                Path(r.path).name[-40:],
                r.status,
                "" if r.probability is None else f"{r.probability:.3f}",
                "" if r.positive is None else ("YES" if r.positive else "no"),
                "" if r.area_mm2 is None else f"{r.area_mm2 / 100:.1f}",
                r.laterality or "",
                "" if r.priority is None else f"{r.priority:.1f}",
                (r.reason or "")[:70],
            )
        )
    return render_table(rows[0], rows[1:])
