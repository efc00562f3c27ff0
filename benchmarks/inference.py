"""Images per second of the cascade against the U-Net on every image, in the same run.

Both pipelines analyse the same phantom images (default: 200 at 20 % prevalence, from a
seed never used in training), read from DICOM files on disk. Printed per pipeline: time per
stage (decode, preprocess, classify, segment, resize, SEG encode), images per second with
and without decoding (decoding is the same work for both and, in the worker, overlaps
inference), and the ratio cascade / U-Net-on-all.

    python -m benchmarks.inference [--images 200] [--prevalence 0.2] [--device auto]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from training.phantom_data import phantom_radiograph
from triage.cascade import Cascade
from triage.dicom.read import read_radiograph
from triage.dicom.seg import Algorithm, build_segmentation
from triage.models.package import default_package_path, load_package

BENCH_SEED = 424_242


def write_images(
    folder: Path, images: int, prevalence: float, sizes: tuple[int, int]
) -> list[Path]:
    """Write the benchmark phantoms as uncompressed DICOM files."""
    paths = []
    for index in range(images):
        _, _, ds = phantom_radiograph(BENCH_SEED, index, prevalence=prevalence, sizes=sizes)
        path = folder / f"{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def run(paths: list[Path], cascade: Cascade, batch: int) -> dict[str, float]:
    """Decode, analyse and SEG-encode ``paths``; returns seconds per stage and positives."""
    algorithm = Algorithm.from_package(cascade.package)
    cascade.timings.clear()
    seconds = {"decode": 0.0, "seg_encode": 0.0}
    positives = 0
    for start in range(0, len(paths), batch):
        began = time.perf_counter()
        loaded = [read_radiograph(p) for p in paths[start : start + batch]]
        seconds["decode"] += time.perf_counter() - began
        results = cascade.run([radiograph for _, radiograph in loaded])
        began = time.perf_counter()
        for (ds, _), result in zip(loaded, results, strict=True):
            if result.positive:
                positives += 1
                build_segmentation(ds, result.mask, algorithm).save_as(io.BytesIO())
        seconds["seg_encode"] += time.perf_counter() - began
    seconds.update(cascade.timings)
    seconds["positives"] = positives
    seconds["segmented"] = cascade.segmented_images
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--prevalence", type=float, default=0.2)
    parser.add_argument("--min-size", type=int, default=1024)
    parser.add_argument("--max-size", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default=str(default_package_path()))
    args = parser.parse_args()

    package = load_package(args.model)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
        f"package {package.name} {package.version}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"writing {args.images} phantoms ({args.min_size}-{args.max_size} px, "
            f"prevalence {args.prevalence}) ..."
        )
        paths = write_images(
            Path(tmp), args.images, args.prevalence, (args.min_size, args.max_size)
        )
        figures = {}
        for mode in ("segment_all", "cascade"):
            cascade = Cascade(package, device=args.device, batch_size=args.batch, mode=mode)
            run(paths[: args.batch], cascade, args.batch)  # warm-up
            cascade.segmented_images = 0
            figures[mode] = run(paths, cascade, args.batch)

    stages = ("decode", "preprocess", "classify", "segment", "resize", "seg_encode")
    print(f"\n{'stage (ms per image)':24s}{'U-Net on all':>14s}{'cascade':>12s}")
    for stage in stages:
        a = 1000 * figures["segment_all"].get(stage, 0.0) / args.images
        b = 1000 * figures["cascade"].get(stage, 0.0) / args.images
        print(f"{stage:24s}{a:14.1f}{b:12.1f}")
    for label, keys in (("with decode", stages), ("without decode", stages[1:])):
        rate = {m: args.images / sum(figures[m].get(k, 0.0) for k in keys) for m in figures}
        print(
            f"images/s {label:15s}  U-Net on all {rate['segment_all']:7.1f}   cascade "
            f"{rate['cascade']:7.1f}   ratio {rate['cascade'] / rate['segment_all']:.2f}x"
        )
    for mode in ("segment_all", "cascade"):
        f = figures[mode]
        print(
            f"{mode:12s}: U-Net ran on {int(f['segmented'])} of {args.images} images, "
            f"{int(f['positives'])} positive"
        )
    print(
        f"(reference measured in the same run; ratio target >= 3x; "
        f"{np.round(args.prevalence * 100)}% prevalence)"
    )


if __name__ == "__main__":
    main()
