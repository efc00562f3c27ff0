"""Command-line entry points of the training package (``triage train``, ``triage synth``)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

DATASETS = ("phantoms", "siim-dicom", "siim-png", "dicom-seg", "feedback")
CONFIG_NAMES = ("cpu-small", "gpu-quality")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``triage train``."""
    parser.add_argument(
        "--dataset",
        default="phantoms",
        choices=DATASETS,
        help="phantoms (generated from --seed; no --data), siim-dicom (DICOMs + --labels "
        "CSV), siim-png (train/ and masks/ of 256-px PNGs), dicom-seg (images + SEGs) or "
        "feedback (the cases readers confirmed or corrected in a service's --data-dir); "
        "default phantoms",
    )
    parser.add_argument(
        "--data-dir", default=None, help="the service's data folder (--dataset feedback)"
    )
    parser.add_argument("--data", default=None, help="data folder (not for phantoms)")
    parser.add_argument("--labels", default=None, help="label CSV (siim-dicom)")
    parser.add_argument(
        "--config",
        default="cpu-small",
        choices=CONFIG_NAMES,
        help="cpu-small: 256 px, small networks, minutes on 2 cores (default); gpu-quality: "
        "512 px EfficientNet encoders after the winning SIIM-ACR recipe",
    )
    parser.add_argument("--folds", type=int, default=None, help="cross-validation folds (5)")
    parser.add_argument("--out", required=True, help="folder of the model package to write")
    parser.add_argument("--epochs", type=int, default=None, help="cap every stage's epochs")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its checkpoints (same --out and options)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--min-sensitivity",
        type=float,
        default=0.0,
        metavar="S",
        help="the operating point must find at least this share of positive images "
        "(0-1; default 0: maximise the competition metric alone)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the all-images U-Net")
    parser.add_argument(
        "--checkpoints", default=None, help="checkpoint folder (default OUT/checkpoints)"
    )
    parser.add_argument("--report", default=None, help="report folder (default OUT/report)")
    parser.add_argument("--images", type=int, default=None, help="phantoms to generate")
    parser.add_argument("--seed", type=int, default=None, help="seed (default 20261204)")
    parser.add_argument(
        "--evaluate",
        type=int,
        default=200,
        metavar="N",
        help="phantoms only: also score the package on N phantoms of an unseen seed "
        "(0: skip; default 200)",
    )


def _train_config(args: argparse.Namespace):
    from training.config import get_config

    config = get_config(args.config)
    if args.epochs is not None:
        config = config.with_epochs(args.epochs)
    overrides = {
        "folds": args.folds,
        "seed": args.seed,
        "images": args.images,
        "baseline": False if args.no_baseline else None,
    }
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def dataset_reader(
    dataset: str, data: str | None, labels: str | None, *, unlabelled_are_negative: bool = False
):
    """The reader of a dataset on disk (siim-png, siim-dicom or dicom-seg).

    Raises
    ------
    ValueError
        If ``data`` (or, for siim-dicom, ``labels``) is missing.
    FileNotFoundError
        If the folder does not have the expected layout.
    """
    from training import datasets

    if not data:
        raise ValueError(f"--dataset {dataset} needs --data PATH")
    if dataset == "siim-png":
        return datasets.SiimPngDataset(root=Path(data))
    if dataset == "siim-dicom":
        if not labels:
            raise ValueError("--dataset siim-dicom needs --labels CSV (ImageId, EncodedPixels)")
        return datasets.SiimDicomDataset(root=Path(data), labels=Path(labels))
    return datasets.DicomSegDataset(
        root=Path(data), images_without_seg_are_negative=unlabelled_are_negative
    )


def load_training_set(args: argparse.Namespace, config):
    """The dataset ``args`` name, prepared for ``config``; raises ValueError on bad options."""
    from training.phantom_data import make_phantom_set
    from training.trainset import from_samples

    sizes = {
        "classifier_size": config.classifier.network.input_size,
        "segmenter_size": config.segmenter.network.input_size,
        "normalisation": config.normalisation,
    }
    if args.dataset == "phantoms":
        data = make_phantom_set(
            images=config.images,
            seed=config.seed,
            prevalence=config.prevalence,
            sizes=config.sizes,
            **sizes,
        )
        return data, {"dataset": "phantoms", "seed": config.seed, "prevalence": config.prevalence}
    reader = dataset_reader(
        args.dataset,
        args.data,
        args.labels,
        # A feedback export holds only analysed frontal images: no SEG means none there.
        unlabelled_are_negative=getattr(args, "unlabelled_are_negative", False),
    )
    data = from_samples(reader, skipped=reader.skipped, **sizes)
    return data, {"dataset": args.dataset, "data": str(Path(args.data).resolve())}


def run_train(args: argparse.Namespace) -> int:
    """Cross-validate, choose the operating point, export the package, write the report."""
    import time

    import torch

    from training.evaluate import evaluate_on_phantoms
    from training.train import cross_validate, export_package, out_of_fold_metrics, with_metrics
    from training.train_report import training_report

    started = time.perf_counter()
    if not 0.0 <= args.min_sensitivity <= 1.0:
        print("triage train: --min-sensitivity must lie between 0 and 1", file=sys.stderr)
        return 2
    try:
        config = _train_config(args)
        data, dataset = load_training_set(args, config)
    except (ValueError, FileNotFoundError) as exc:
        print(f"triage train: {exc}", file=sys.stderr)
        return 2
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    checkpoints = Path(args.checkpoints) if args.checkpoints else out / "checkpoints"
    print(
        f"{len(data)} images ({int(data.labels.sum())} with a pneumothorax, "
        f"{len(set(data.patient_ids))} patients, {len(data.skipped)} skipped); "
        f"{config.folds} folds, {args.config} on {device}"
    )
    result = cross_validate(
        data, config, checkpoints=checkpoints, resume=args.resume, device=device
    )
    try:
        metrics = out_of_fold_metrics(data, result, min_sensitivity=args.min_sensitivity)
    except ValueError as exc:
        print(
            f"triage train: {exc}. The trained folds are kept in {checkpoints}: run again "
            "with --resume and a lower --min-sensitivity.",
            file=sys.stderr,
        )
        return 1
    command = "triage " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else ""
    package = export_package(
        out,
        data,
        config,
        result,
        metrics,
        dataset={**dataset, "synthetic": data.synthetic},
        started=started,
        command=command,
    )
    held_out = None
    if args.dataset == "phantoms" and args.evaluate:
        held_out = evaluate_on_phantoms(package.path, images=args.evaluate, device=device)
        package = with_metrics(package, held_out)
    report = training_report(
        Path(args.report) if args.report else out / "report",
        data=data,
        result=result,
        metrics=metrics,
        package=package,
        held_out=held_out,
    )
    print(_summary(metrics, held_out))
    print(f"model package: {package.path}\nreport: {report}")
    return 0


def _summary(metrics: dict, held_out: dict | None) -> str:
    lines = [
        f"out of fold ({metrics['images']} images), classifier AUC {metrics['classifier_auc']}"
    ]
    for row in metrics["comparison"]:
        lines.append(
            f"  {row['design']:<45} mean Dice {row.get('mean_dice', '-')}  "
            f"sensitivity {row.get('sensitivity', '-')}  {row['ms_per_image']} ms/image"
        )
    lines.append(f"  {'all-empty baseline':<45} mean Dice {metrics['cascade']['empty_baseline']}")
    if held_out:
        lines.append(
            f"held-out phantoms ({held_out['images']}): mean Dice {held_out['mean_dice']} "
            f"(baseline {held_out['empty_baseline']}), AUC {held_out['classifier_auc']}"
        )
    return "\n".join(lines)


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
    """Options of ``triage evaluate [PKG [DATA]]``."""
    parser.add_argument(
        "package", nargs="?", default=None, metavar="PKG", help="model package (or --model)"
    )
    parser.add_argument("data_path", nargs="?", default=None, metavar="DATA", help="or --data")
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
    parser.add_argument(
        "--out",
        default=None,
        help="folder for report.html (ROC, Dice histogram, examples) and metrics.json",
    )


def run_evaluate(args: argparse.Namespace) -> int:
    """Score a package on a dataset with the competition metrics (and a report with --out)."""
    from training.evaluate import Scorer, evaluate_on_phantoms, evaluate_samples, evaluation_report
    from triage.models.package import default_package_path, load_package

    args.model = args.model or args.package
    args.data = args.data or args.data_path
    package = Path(args.model) if args.model else default_package_path()
    scorer = Scorer()
    if args.dataset == "phantoms":
        metrics = evaluate_on_phantoms(
            package, images=args.images, device=args.device, scorer=scorer
        )
        skipped: list = []
    else:
        try:
            data = dataset_reader(args.dataset, args.data, args.labels)
        except ValueError as exc:
            print(f"triage evaluate: {exc}", file=sys.stderr)
            return 2
        metrics = evaluate_samples(package, data, device=args.device, scorer=scorer)
        skipped = data.skipped
    loaded = load_package(package)
    metrics = {
        **metrics,
        "package": str(package),
        "classifier_threshold": loaded.operating_point.classifier_threshold,
        "dataset": args.dataset,
        "skipped": [{"file": f, "reason": r} for f, r in skipped],
    }
    print(json.dumps(metrics, indent=2))
    if args.out:
        page = evaluation_report(
            Path(args.out),
            scorer,
            metrics,
            title=f"Evaluation of {loaded.name} {loaded.version} on {args.dataset}",
        )
        print(f"report: {page}", file=sys.stderr)
    return 0
