"""Command-line entry points of the training package (``triage train``, ``triage synth``)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

DATASETS = ("phantoms",)
LATER_DATASETS = ("siim-dicom", "siim-png", "dicom-seg")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``triage train``."""
    parser.add_argument(
        "--dataset",
        default="phantoms",
        choices=DATASETS + LATER_DATASETS,
        help="training data (this version trains on phantoms only)",
    )
    parser.add_argument("--out", required=True, help="folder of the model package to write")
    parser.add_argument(
        "--images", type=int, default=None, help="number of phantoms (default 1600)"
    )
    parser.add_argument("--classifier-epochs", type=int, default=None, help="default 12")
    parser.add_argument("--segmenter-epochs", type=int, default=None, help="default 14")
    parser.add_argument("--seed", type=int, default=None, help="phantom seed (default 20261204)")
    parser.add_argument(
        "--evaluate",
        type=int,
        default=200,
        metavar="N",
        help="score the package on N held-out phantoms (0: skip; default 200)",
    )


def run_train(args: argparse.Namespace) -> int:
    """Train on phantoms, evaluate on held-out phantoms, write the package."""
    if args.dataset != "phantoms":
        print(
            f"triage train: dataset {args.dataset!r} is not implemented yet in this "
            "version; use --dataset phantoms",
            file=sys.stderr,
        )
        return 2
    from training.evaluate import evaluate_on_phantoms
    from training.train import QuickConfig, train_package, with_metrics

    config = QuickConfig()
    overrides = {
        "images": args.images,
        "classifier_epochs": args.classifier_epochs,
        "segmenter_epochs": args.segmenter_epochs,
        "seed": args.seed,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    command = "triage " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else ""
    package = train_package(Path(args.out), config, command=command)
    if args.evaluate:
        held_out = evaluate_on_phantoms(package.path, images=args.evaluate)
        package = with_metrics(package, held_out)
    print(json.dumps(package.metrics.get("held_out", package.metrics["validation"]), indent=2))
    print(f"model package written to {package.path}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    """Write phantom studies (or a SIIM-style PNG set)."""
    from training.phantoms import write_siim_png, write_studies

    out = Path(args.out)
    if args.siim_png:
        ids = write_siim_png(out, images=args.siim_png, seed=args.seed, prevalence=args.prevalence)
        print(f"wrote {len(ids)} images to {out / 'train'} and masks to {out / 'masks'}")
        return 0
    images = write_studies(
        out,
        studies=args.studies,
        seed=args.seed,
        prevalence=args.prevalence,
        sizes=(512, max(512, args.max_size)),
    )
    frontal = [i for i in images if i.mask_path is not None]
    positives = sum(i.phantom.positive for i in frontal)
    print(
        f"wrote {args.studies} studies, {len(images)} images ({len(frontal)} frontal, "
        f"{positives} with a pneumothorax) to {out}"
    )
    return 0


EVALUATE_DATASETS = ("phantoms", "siim-png", "siim-dicom", "dicom-seg")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``triage evaluate``."""
    parser.add_argument(
        "--model", default=None, help="model package folder (default: the bundled one)"
    )
    parser.add_argument(
        "--dataset",
        default="phantoms",
        choices=EVALUATE_DATASETS,
        help="kind of data (default phantoms, from a seed never used in training)",
    )
    parser.add_argument("--data", default=None, help="data folder (not for phantoms)")
    parser.add_argument("--labels", default=None, help="label CSV for siim-dicom")
    parser.add_argument("--images", type=int, default=200, help="phantoms to score (default 200)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", default=None, help="folder for metrics.json")


def run_evaluate(args: argparse.Namespace) -> int:
    """Score a package on a dataset with the competition metrics."""
    from training import datasets
    from training.evaluate import evaluate_on_phantoms, evaluate_samples
    from triage.models.package import default_package_path

    package = Path(args.model) if args.model else default_package_path()
    if args.dataset == "phantoms":
        metrics = evaluate_on_phantoms(package, images=args.images, device=args.device)
        skipped: list = []
    else:
        if not args.data:
            print(f"triage evaluate: --dataset {args.dataset} needs --data PATH", file=sys.stderr)
            return 2
        if args.dataset == "siim-png":
            data: datasets.SiimPngDataset | datasets.SiimDicomDataset | datasets.DicomSegDataset
            data = datasets.SiimPngDataset(root=Path(args.data))
        elif args.dataset == "siim-dicom":
            if not args.labels:
                print("triage evaluate: --dataset siim-dicom needs --labels CSV", file=sys.stderr)
                return 2
            data = datasets.SiimDicomDataset(root=Path(args.data), labels=Path(args.labels))
        else:
            data = datasets.DicomSegDataset(root=Path(args.data))
        metrics = evaluate_samples(package, data, device=args.device)
        skipped = data.skipped
    metrics = {
        **metrics,
        "package": str(package),
        "dataset": args.dataset,
        "skipped": [{"file": f, "reason": r} for f, r in skipped],
    }
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(text + "\n", encoding="utf-8")
    return 0
