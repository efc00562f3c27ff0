"""The bundled model package: honest about its data, and good enough on unseen phantoms."""

from __future__ import annotations

import pytest

from training.evaluate import HELD_OUT_SEED, evaluate_on_phantoms
from triage.models.package import default_package_path, load_package


def test_default_package_says_it_is_synthetic():
    package = load_package(default_package_path())
    assert package.synthetic is True
    assert package.research_only is True
    assert "SYNTHETIC" in package.description.upper()
    assert package.training["dataset"] == "phantoms"
    assert package.training["data_hash"].startswith("sha256:")
    assert package.training["seed"] != HELD_OUT_SEED


def test_default_package_was_made_by_the_cross_validated_trainer():
    """The README's command made it, and its out-of-fold report supports the cascade."""
    package = load_package(default_package_path())
    assert package.training["command"].startswith(
        "triage train --dataset phantoms --config cpu-small --out triage/models/default"
    )
    assert package.training["folds"] == 5
    assert len(package.classifier.weights) == len(package.segmenter.weights) == 5
    rows = {r["design"]: r for r in package.metrics["out_of_fold"]["comparison"]}
    cascade = rows["cascade (classifier + positives-only U-Net)"]
    assert cascade["mean_dice"] >= cascade["empty_baseline"] + 0.15
    assert cascade["mean_dice"] > rows["all-images U-Net alone"]["mean_dice"]


@pytest.mark.slow
def test_default_package_on_200_unseen_phantoms():
    """The foundation issue's bar: AUC >= 0.95 and mean Dice >= empty baseline + 0.15."""
    metrics = evaluate_on_phantoms(default_package_path(), images=200, device="cpu")
    assert metrics["images"] == 200
    assert metrics["classifier_auc"] >= 0.95, metrics
    assert metrics["mean_dice"] >= metrics["empty_baseline"] + 0.15, metrics
    # The cascade must actually gate: far fewer images reach the U-Net than exist.
    assert metrics["segmented_images"] < 0.6 * metrics["images"], metrics
