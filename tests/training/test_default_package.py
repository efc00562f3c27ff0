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


@pytest.mark.slow
def test_default_package_on_200_unseen_phantoms():
    """The foundation issue's bar: AUC >= 0.95 and mean Dice >= empty baseline + 0.15."""
    metrics = evaluate_on_phantoms(default_package_path(), images=200, device="cpu")
    assert metrics["images"] == 200
    assert metrics["classifier_auc"] >= 0.95, metrics
    assert metrics["mean_dice"] >= metrics["empty_baseline"] + 0.15, metrics
    # The cascade must actually gate: far fewer images reach the U-Net than exist.
    assert metrics["segmented_images"] < 0.6 * metrics["images"], metrics
