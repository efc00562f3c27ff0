"""Model packages: manifest round trip, every way a package can be broken, networks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.packages import CLASSIFIER, SEGMENTER, make_package
from triage.errors import PackageError, TriageError
from triage.models.networks import Ensemble, NetworkSpec, build_network
from triage.models.package import (
    FORMAT_VERSION,
    MANIFEST,
    ModelPackage,
    default_package_path,
    load_package,
    save_package,
)
from triage.postprocess import OperatingPoint
from triage.preprocess import Normalisation


@pytest.fixture
def package_dir(tmp_path: Path) -> Path:
    """A valid tiny package with random weights."""
    path = tmp_path / "package"
    make_package(path, operating_point=OperatingPoint(classifier_threshold=0.3, min_area=25))
    return path


def edit_manifest(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    file = folder / MANIFEST
    data = json.loads(file.read_text(encoding="utf-8"))
    change(data)
    file.write_text(json.dumps(data), encoding="utf-8")


def test_load_package_round_trips_the_manifest(tmp_path: Path) -> None:
    op = OperatingPoint(
        classifier_threshold=0.3,
        top_score=0.8,
        min_area=25,
        pixel_threshold=0.45,
        min_component=5,
    )
    written = make_package(tmp_path / "package", operating_point=op, synthetic=False)
    loaded = load_package(tmp_path / "package")
    assert loaded == written
    assert loaded.path == tmp_path / "package"
    assert loaded.name == "ptx-unit-test"
    assert loaded.version == "0.0.1"
    assert loaded.classifier.input_size == (64, 64)
    assert loaded.segmenter.input_size == (96, 96)
    assert loaded.normalisation == Normalisation()
    assert loaded.operating_point == op
    assert loaded.classifier == CLASSIFIER
    assert loaded.segmenter == SEGMENTER
    assert loaded.synthetic is False
    assert loaded.research_only is True  # training.research is true
    manifest = json.loads((tmp_path / "package" / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["format"] == FORMAT_VERSION
    assert manifest == loaded.manifest()


def test_load_package_accepts_a_string_path(package_dir: Path) -> None:
    assert load_package(str(package_dir)).synthetic is True


def test_package_error_belongs_to_the_triage_family() -> None:
    assert issubclass(PackageError, TriageError)
    assert "model package" in str(PackageError())


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"not a folder") as info:
        load_package(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


def test_a_file_instead_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("{}", encoding="utf-8")
    with pytest.raises(PackageError, match=r"not a folder"):
        load_package(tmp_path / "file")


def test_missing_manifest(package_dir: Path) -> None:
    (package_dir / MANIFEST).unlink()
    with pytest.raises(PackageError, match=r"has no manifest\.json"):
        load_package(package_dir)


def test_invalid_json(package_dir: Path) -> None:
    (package_dir / MANIFEST).write_text('{"format": 1,', encoding="utf-8")
    with pytest.raises(PackageError, match=r"manifest\.json is not valid JSON"):
        load_package(package_dir)


@pytest.mark.parametrize("key", ["operating_point", "classifier", "training", "normalisation"])
def test_missing_key_is_named(package_dir: Path, key: str) -> None:
    edit_manifest(package_dir, lambda data: data.pop(key))
    with pytest.raises(PackageError, match=rf"lacks {key}$"):
        load_package(package_dir)


def test_newer_format_is_refused(package_dir: Path) -> None:
    edit_manifest(package_dir, lambda data: data.update(format=2))
    with pytest.raises(PackageError, match=r"has format 2; this program reads format 1"):
        load_package(package_dir)


def test_unknown_architecture_suggests_the_close_one(package_dir: Path) -> None:
    edit_manifest(package_dir, lambda data: data["segmenter"].update(architecture="Unet"))
    with pytest.raises(PackageError, match=r"'Unet' is not supported") as info:
        load_package(package_dir)
    assert "Did you mean 'UNet'?" in str(info.value)
    assert "DenseNet121" in str(info.value)  # and lists what is supported


def test_unknown_architecture_without_a_close_one_has_no_hint() -> None:
    with pytest.raises(PackageError, match=r"'Transformer9000' is not supported") as info:
        NetworkSpec(architecture="Transformer9000")
    assert "Did you mean" not in str(info.value)


def test_network_entry_without_architecture(package_dir: Path) -> None:
    edit_manifest(package_dir, lambda data: data["classifier"].pop("architecture"))
    with pytest.raises(PackageError, match=r"network entry .* is malformed"):
        load_package(package_dir)


def test_bad_operating_point_value(package_dir: Path) -> None:
    edit_manifest(package_dir, lambda data: data["operating_point"].update(top_score=1.5))
    with pytest.raises(PackageError, match=r"malformed: top_score .* 1\.5"):
        load_package(package_dir)


@pytest.mark.parametrize("stage", ["classifier", "segmenter"])
def test_missing_weight_file(package_dir: Path, stage: str) -> None:
    (package_dir / f"{stage}.pt").unlink()
    with pytest.raises(PackageError, match=rf"{stage} weight file {stage}\.pt is missing"):
        load_package(package_dir)


def test_stage_without_weights(package_dir: Path) -> None:
    edit_manifest(package_dir, lambda data: data["classifier"].update(weights=[]))
    with pytest.raises(PackageError, match=r"classifier names no weight file"):
        load_package(package_dir)


def test_weight_file_removed_after_loading(package_dir: Path) -> None:
    package = load_package(package_dir)
    (package_dir / "segmenter.pt").unlink()
    with pytest.raises(PackageError, match=r"segmenter weight file .*segmenter\.pt is missing"):
        package.load_network("segmenter")


def test_weights_that_do_not_fit_the_architecture(package_dir: Path) -> None:
    classifier, segmenter = package_dir / "classifier.pt", package_dir / "segmenter.pt"
    spare = package_dir / "spare.pt"
    classifier.rename(spare)
    segmenter.rename(classifier)
    spare.rename(segmenter)
    package = load_package(package_dir)  # the files exist; their contents are checked later
    with pytest.raises(PackageError, match=r"classifier weights .* do not fit DenseNet"):
        package.load_network("classifier")
    with pytest.raises(PackageError, match=r"segmenter weights .* do not fit UNet"):
        package.load_network("segmenter")


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_training_synthetic_must_be_a_boolean(package_dir: Path, value: object) -> None:
    edit_manifest(package_dir, lambda data: data["training"].update(synthetic=value))
    with pytest.raises(PackageError, match=r"training\.synthetic must be true or false"):
        load_package(package_dir)


@pytest.mark.parametrize("size", [[16, 64], [64], "big"])
def test_bad_input_size(package_dir: Path, size: object) -> None:
    edit_manifest(package_dir, lambda data: data["segmenter"].update(input_size=size))
    with pytest.raises(PackageError, match=r"input_size|malformed"):
        load_package(package_dir)


def test_unknown_stage_is_refused(package_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"stage must be one of .*'detector'"):
        load_package(package_dir).spec("detector")


def test_load_network_returns_the_saved_weights_in_eval_mode(package_dir: Path) -> None:
    package = load_package(package_dir)
    classifier = package.load_network("classifier")
    segmenter = package.load_network("segmenter")
    assert not classifier.training
    assert not segmenter.training
    assert all(not m.training for m in segmenter.modules())
    saved = torch.load(package_dir / "classifier.pt", weights_only=True)
    loaded = classifier.state_dict()
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert classifier(x).shape == (2, 1)
        assert segmenter(x).shape == (2, 1, 64, 64)
        # Eval mode: batch norm uses running statistics, not the rest of the batch.
        torch.testing.assert_close(classifier(x[:1]), classifier(x)[:1])


def test_two_weight_files_make_an_ensemble_that_averages(tmp_path: Path) -> None:
    spec = NetworkSpec(
        architecture=SEGMENTER.architecture,
        params=SEGMENTER.params,
        input_size=SEGMENTER.input_size,
        weights=("fold0.pt", "fold1.pt"),
    )
    torch.manual_seed(1)
    first, second = build_network(spec), build_network(spec)
    package = ModelPackage(
        path=tmp_path / "ensemble",
        name="ensemble",
        version="1",
        classifier=CLASSIFIER,
        segmenter=spec,
        normalisation=Normalisation(),
        operating_point=OperatingPoint(),
        training={"synthetic": True},
    )
    torch.manual_seed(2)
    save_package(
        package,
        {
            "classifier.pt": build_network(CLASSIFIER).state_dict(),
            "fold0.pt": first.state_dict(),
            "fold1.pt": second.state_dict(),
        },
    )
    loaded = load_package(tmp_path / "ensemble")
    assert loaded.segmenter.weights == ("fold0.pt", "fold1.pt")
    model = loaded.load_network("segmenter")
    assert isinstance(model, Ensemble)
    assert len(model.members) == 2
    assert not model.training
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        first.eval()
        second.eval()
        a, b = first(x), second(x)
        assert not torch.allclose(a, b)  # the members really differ
        torch.testing.assert_close(model(x), (a + b) / 2)
    # A single file stays a plain network.
    assert not isinstance(loaded.load_network("classifier"), Ensemble)


def test_ensemble_needs_a_member() -> None:
    with pytest.raises(ValueError, match=r"at least one member"):
        Ensemble([])


def test_build_network_refuses_bad_parameters() -> None:
    spec = NetworkSpec(architecture="UNet", params={"spatial_dims": 2, "bogus": 1})
    with pytest.raises(PackageError, match=r"cannot build UNet with parameters"):
        build_network(spec)


def test_network_spec_json_round_trip_and_single_weight_string() -> None:
    assert NetworkSpec.from_json(CLASSIFIER.to_json()) == CLASSIFIER
    spec = NetworkSpec.from_json(
        {"architecture": "UNet", "input_size": [128, 96], "weights": "one.pt"}
    )
    assert spec.weights == ("one.pt",)
    assert spec.input_size == (128, 96)
    with pytest.raises(PackageError, match="malformed"):
        NetworkSpec.from_json({"architecture": "UNet", "weights": "one.pt"})


def test_copied_package_loads_from_its_new_place(package_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(package_dir, tmp_path / "copy")
    assert load_package(copy).path == copy


def test_default_package_says_it_is_synthetic() -> None:
    folder = default_package_path()
    if not (folder / MANIFEST).is_file():
        pytest.skip(f"no default package at {folder} (train one with `triage train`)")
    package = load_package(folder)
    assert package.synthetic is True
    assert package.research_only is True
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["training"]["synthetic"] is True
