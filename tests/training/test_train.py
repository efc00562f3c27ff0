"""The cross-validated trainer: folds, the epoch loop, resume, the comparison, the command."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.packages import CLASSIFIER, SEGMENTER
from training.compare import compare
from training.config import StageConfig, TrainConfig, get_config
from training.fit import fit
from training.folds import load_folds
from training.phantom_data import make_phantom_set
from training.stages import classifier_stage, segmenter_stage
from training.train import cross_validate, inner_split
from triage.preprocess import Normalisation

TINY = TrainConfig(
    name="tiny",
    folds=2,
    classifier=StageConfig(network=CLASSIFIER, epochs=2, batch_size=4),
    segmenter=StageConfig(network=SEGMENTER, epochs=2, batch_size=4, crop=(48, 48)),
)


PHANTOMS = dict(
    images=12,
    seed=3,
    prevalence=0.5,
    classifier_size=(64, 64),
    segmenter_size=(96, 96),
    normalisation=Normalisation(),
    sizes=(512, 560),
    workers=1,
)


@pytest.fixture(scope="module")
def phantoms():
    return make_phantom_set(**PHANTOMS)


def test_phantom_set_is_deterministic_aligned_and_marked_synthetic(phantoms):
    again = make_phantom_set(**PHANTOMS)
    assert again.digest() == phantoms.digest()
    assert phantoms.classifier_inputs.shape == (12, 64, 64)
    assert phantoms.segmenter_inputs.shape == phantoms.masks.shape == (12, 96, 96)
    assert np.array_equal(phantoms.labels, phantoms.masks.reshape(12, -1).any(axis=1))
    assert phantoms.synthetic and len(set(phantoms.patient_ids)) == 12
    assert 0 < phantoms.labels.sum() < 12


def test_inner_split_keeps_patients_whole_and_finds_positives(phantoms):
    data = replace(phantoms, patient_ids=tuple(f"P{i // 2}" for i in range(12)))
    fit_part, valid = inner_split(data, np.arange(12), 0.3, seed=1)
    assert set(fit_part).isdisjoint(valid) and len(fit_part) + len(valid) == 12
    patients = lambda idx: {data.patient_ids[i] for i in idx}  # noqa: E731
    assert patients(fit_part).isdisjoint(patients(valid))


def _stage(data, kind: str, seed: int = 5):
    train, valid = np.arange(8), np.arange(8, 12)
    if kind == "classifier":
        return classifier_stage(data, train, valid, TINY.classifier, seed=seed, label="c")
    return segmenter_stage(
        data, train, valid, TINY.segmenter, seed=seed, label="s", positives_only=True
    )


@pytest.mark.parametrize("kind", ["classifier", "segmenter"])
def test_resume_after_an_interrupted_epoch_gives_the_same_network(phantoms, tmp_path, kind):
    settings = replace(TINY.classifier if kind == "classifier" else TINY.segmenter, epochs=3)
    whole, history = fit(_stage(phantoms, kind), settings, seed=5, checkpoint=tmp_path / "a.pt")

    stage = _stage(phantoms, kind)
    calls = {"n": 0}
    steps_per_epoch = -(-len(stage.epoch_indices(1, np.random.default_rng(0))) // 4)

    def batch_then_crash(indices, epoch):
        calls["n"] += 1
        if calls["n"] > steps_per_epoch + steps_per_epoch // 2:  # during the second epoch
            raise KeyboardInterrupt
        return stage.batch(indices, epoch)

    crashing = replace(stage, batch=batch_then_crash)
    with pytest.raises(KeyboardInterrupt):
        fit(crashing, settings, seed=5, checkpoint=tmp_path / "b.pt")
    saved = torch.load(tmp_path / "b.pt", weights_only=True)
    assert saved["epoch"] == 1 and not saved["finished"]

    resumed, resumed_history = fit(
        _stage(phantoms, kind), settings, seed=5, checkpoint=tmp_path / "b.pt", resume=True
    )
    assert [h["epoch"] for h in resumed_history] == [1, 2, 3]
    assert [h["validation"] for h in resumed_history] == [h["validation"] for h in history]
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key

    # A finished stage is loaded, not trained again.
    again, again_history = fit(
        _stage(phantoms, kind, seed=99), settings, seed=5, checkpoint=tmp_path / "b.pt", resume=True
    )
    assert again_history == resumed_history
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in resumed.state_dict().items())


def test_early_stopping_and_checkpoint_averaging(phantoms, tmp_path):
    stage = _stage(phantoms, "classifier")
    scores = iter([0.5, 0.4, 0.45, 0.3, 0.9, 0.9])
    stage = replace(stage, score=lambda net: next(scores))
    settings = replace(TINY.classifier, epochs=6, patience=3, average_best=2)
    _, history = fit(stage, settings, seed=1, checkpoint=tmp_path / "c.pt")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]  # three epochs without a better score
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    assert saved["finished"] and len(saved["best"]) == 2
    assert [score for score, _ in saved["best"]] == [0.5, 0.45]
    key = next(k for k, v in saved["final"].items() if v.is_floating_point())
    expected = (saved["best"][0][1][key] + saved["best"][1][1][key]) / 2
    assert torch.allclose(saved["final"][key], expected)


def test_cross_validation_predicts_every_image_out_of_fold(phantoms, tmp_path):
    result = cross_validate(phantoms, TINY, checkpoints=tmp_path)
    folds = load_folds(tmp_path / "folds.csv")
    assert {f.fold for f in folds} == {0, 1}
    assert [f.image_id for f in folds] == list(phantoms.image_ids)
    oof = result.out_of_fold
    assert oof.maps.shape == phantoms.masks.shape and oof.baseline_maps is not None
    assert ((oof.probabilities > 0) & (oof.probabilities < 1)).all()
    assert (oof.maps.reshape(12, -1).max(axis=1) > 0).all()  # every image was predicted
    assert set(result.states) == {"classifier", "segmenter", "baseline"}
    assert all(len(v) == 2 for v in result.histories.values())
    assert set(oof.milliseconds) == {"classifier", "segmenter", "baseline"}


def test_comparison_rewards_the_gate_when_the_unet_alone_sees_ghosts():
    """Negatives carry a bright blob the U-Nets draw; only the classifier can reject it."""
    n, size = 20, 32
    labels = np.arange(n) < 6
    masks = np.zeros((n, size, size), dtype=bool)
    maps = np.full((n, size, size), 0.02, dtype=np.float32)
    for i in range(n):
        if labels[i]:
            masks[i, 4:20, 4:20] = True
            maps[i, 4:20, 4:20] = 0.95
        else:
            maps[i, 10:26, 10:26] = 0.95  # as large and as sure as a true lesion
    probabilities = np.where(labels, 0.9, 0.1).astype(np.float32)
    result = compare(
        labels=labels,
        probabilities=probabilities,
        maps=maps,
        baseline_maps=maps,
        masks=masks,
        milliseconds={"classifier": 1.0, "segmenter": 10.0, "baseline": 10.0},
    )
    rows = {r["design"].split(" (")[0]: r for r in result["rows"]}
    assert rows["cascade"]["mean_dice"] == pytest.approx(1.0)
    assert rows["positives-only U-Net alone"]["mean_dice"] == pytest.approx(0.3)
    assert rows["cascade"]["ms_per_image"] == pytest.approx(1.0 + 0.3 * 10.0)
    assert result["operating_point"].classifier_threshold > 0.1


def test_configurations_and_a_misspelled_name():
    small, quality = get_config("cpu-small"), get_config("gpu-quality")
    assert small.classifier.network.input_size == (256, 256)
    assert quality.segmenter.positive_fraction == (0.8, 0.4)
    assert quality.segmenter.average_best == 3
    assert small.with_epochs(2).segmenter.epochs == 2
    with pytest.raises(ValueError, match="Did you mean 'cpu-small'"):
        get_config("cpu-smal")


def _triage(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_train_without_data_says_what_is_missing(tmp_path):
    done = _triage("train", "--dataset", "siim-png", "--out", str(tmp_path / "p"), cwd=tmp_path)
    assert done.returncode == 2
    assert "--dataset siim-png needs --data PATH" in done.stderr


@pytest.mark.slow
def test_one_epoch_run_writes_a_package_and_report_that_predict_loads(tmp_path):
    pkg = tmp_path / "pkg"
    done = _triage(
        "train", "--dataset", "phantoms", "--images", "24", "--folds", "2", "--epochs", "1",
        "--evaluate", "6", "--out", str(pkg), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["training"]["synthetic"] is True
    assert manifest["training"]["folds"] == 2
    assert manifest["classifier"]["weights"] == ["classifier-fold1.pt", "classifier-fold2.pt"]
    assert manifest["training"]["command"].startswith("triage train --dataset phantoms")
    designs = [r["design"] for r in manifest["metrics"]["out_of_fold"]["comparison"]]
    assert designs[0] == "all-images U-Net alone" and designs[-1].startswith("cascade")
    assert manifest["metrics"]["held_out"]["images"] == 6
    report = (pkg / "report" / "report.html").read_text()
    for picture in ("roc.png", "dice-histogram.png", "learning-curves.png", "example-1.png"):
        assert (pkg / "report" / picture).stat().st_size > 1000
        assert picture in report
    assert "SYNTHETIC PHANTOMS" in report
    metrics = json.loads((pkg / "report" / "metrics.json").read_text())
    assert len(metrics["histories"]["segmenter"]) == 2

    studies = tmp_path / "studies"
    assert _triage("synth", "--out", str(studies), "--studies", "2", cwd=tmp_path).returncode == 0
    done = _triage(
        "predict", "--model", str(pkg), "--out", str(tmp_path / "out"), str(studies),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    analysed = [r for r in results if r["status"] == "analysed"]
    assert analysed and all(0.0 <= r["probability"] <= 1.0 for r in analysed)


@pytest.mark.slow
def test_siim_png_run_counts_skipped_files_and_keeps_the_phantom_mark(tmp_path):
    from training.phantoms import write_siim_png

    data = tmp_path / "png"
    write_siim_png(data, images=16, seed=4, prevalence=0.5)
    (data / "train" / "broken.png").write_bytes(b"not a png")
    (data / "masks" / "broken.png").write_bytes(b"not a png")
    pkg = tmp_path / "pkg"
    done = _triage(
        "train", "--dataset", "siim-png", "--data", str(data), "--folds", "2", "--epochs", "1",
        "--no-baseline", "--out", str(pkg), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["training"]["images"] == 16
    assert manifest["training"]["skipped"] == 1
    assert manifest["training"]["synthetic"] is True  # PHANTOMS.txt beside train/
    assert "broken.png" in (pkg / "report" / "report.html").read_text()
    designs = [r["design"] for r in manifest["metrics"]["out_of_fold"]["comparison"]]
    assert "all-images U-Net alone" not in designs


@pytest.mark.slow
def test_siim_dicom_run_groups_by_patient_and_skips_a_missing_file(tmp_path):
    """Phantom studies as SIIM DICOMs with a label CSV; one CSV row names no file."""
    import pydicom

    from training.phantoms import write_studies
    from training.rle import encode

    images = write_studies(tmp_path / "dicom", studies=8, seed=12, prevalence=0.5)
    rows = ["ImageId, EncodedPixels"]
    for image in images:
        if image.mask_path is not None:
            ds = pydicom.dcmread(image.path, stop_before_pixels=True)
            rows.append(f"{ds.SOPInstanceUID}, {encode(image.phantom.mask)}")
    rows.append("1.2.3.4.404, -1")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    pkg = tmp_path / "pkg"
    done = _triage(
        "train", "--dataset", "siim-dicom", "--data", str(tmp_path / "dicom"),
        "--labels", str(tmp_path / "labels.csv"), "--folds", "2", "--epochs", "1",
        "--out", str(pkg), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1.2.3.4.404" in done.stderr  # the warning names the missing image
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["training"]["images"] == len(rows) - 2
    assert manifest["training"]["skipped"] == 1
    assert manifest["training"]["synthetic"] is True  # the phantoms' Manufacturer
    folds = load_folds(pkg / "checkpoints" / "folds.csv")
    fold_of_patient: dict[str, set[int]] = {}
    for item in folds:
        fold_of_patient.setdefault(item.patient_id, set()).add(item.fold)
    assert all(len(f) == 1 for f in fold_of_patient.values())
    assert "1.2.3.4.404" in (pkg / "report" / "report.html").read_text()


@pytest.mark.slow
def test_gpu_quality_recipe_runs_end_to_end_on_a_small_grid(phantoms, tmp_path):
    """EfficientNet encoders, Dice + focal loss, positive sampling 0.8 -> 0.4 and checkpoint
    averaging, at 64/96 px on the CPU: the code paths the GPU configuration takes."""
    from training.config import gpu_quality

    quality = gpu_quality()

    def small(stage, size):
        network = replace(stage.network, input_size=(size, size))
        return replace(stage, network=network, epochs=3, batch_size=4, patience=0)

    config = replace(
        quality,
        folds=2,
        baseline=False,
        classifier=small(quality.classifier, 64),
        segmenter=small(quality.segmenter, 96),
    )
    result = cross_validate(phantoms, config, checkpoints=tmp_path)
    saved = torch.load(tmp_path / "fold1-segmenter.pt", weights_only=True)
    assert saved["finished"] and len(saved["best"]) == 3  # three checkpoints averaged
    assert len(result.histories["segmenter"][0]) == 3
    assert np.isfinite(result.out_of_fold.maps.astype(np.float32)).all()
