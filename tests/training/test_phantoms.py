"""Synthetic chest phantoms: determinism, ground truth, DICOM encoding and file layouts."""

from __future__ import annotations

import datetime
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless
from scipy import ndimage

from training.phantoms import (
    DicomOptions,
    Phantom,
    PhantomError,
    PneumothoraxSpec,
    phantom_dataset,
    render_phantom,
    stored_values,
    write_siim_png,
    write_studies,
)
from training.phantoms import phantom as phantom_module
from training.phantoms.dicomio import BITS_STORED, TRANSFER_SYNTAXES

#: A moderate right apical-lateral pneumothorax, wide enough to look inside.
MODERATE = PneumothoraxSpec(
    side="R", angle=-50.0, span=80.0, fraction=0.25, darkness=0.07, line=0.1
)


def _render(seed: int, **kwargs) -> Phantom:
    kwargs.setdefault("rows", 256)
    kwargs.setdefault("cols", 256)
    kwargs.setdefault("positive", True)
    return render_phantom(np.random.default_rng([seed]), **kwargs)


def _dataset(phantom, options: DicomOptions) -> pydicom.Dataset:
    return phantom_dataset(
        phantom,
        options=options,
        study_instance_uid="2.25.1",
        series_instance_uid="2.25.2",
        sop_instance_uid="2.25.3",
        patient_id="PHANTOM-0001",
        patient_name="PHANTOM^Case0001",
        accession_number="PH0000000001",
        study_datetime=datetime.datetime(2024, 5, 6, 7, 8, 9),
        pixel_spacing_mm=0.5,
    )


def _round_trip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_same_seed_renders_identical_phantom_and_other_seed_differs():
    first, again, other = _render(3), _render(3), _render(4)
    assert first.image.dtype == np.float32 and first.mask.dtype == bool
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.mask, again.mask)
    assert (first.side, first.fraction) == (again.side, again.fraction)
    assert not np.array_equal(first.image, other.image)


def test_ground_truth_matches_label():
    for seed in range(8):
        positive, negative = _render(seed, positive=True), _render(seed, positive=False)
        assert positive.positive and positive.mask.any()
        assert positive.side in ("L", "R")
        assert 0.005 <= positive.fraction <= 0.45
        assert positive.image.min() >= 0.0 and positive.image.max() <= 1.0
        assert not negative.positive and not negative.mask.any()
        assert negative.side is None and negative.fraction == 0.0


def test_mask_area_tracks_fraction():
    small = _render(1, pneumothorax=PneumothoraxSpec(**{**MODERATE.__dict__, "fraction": 0.03}))
    large = _render(1, pneumothorax=MODERATE)
    assert small.fraction == pytest.approx(0.03, abs=0.01)
    assert large.fraction == pytest.approx(0.25, abs=0.02)
    assert large.mask.sum() > 4 * small.mask.sum()


def _centre_column(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[1].mean()) / mask.shape[1]


@pytest.mark.parametrize("side", ["L", "R"])
def test_mask_lies_on_the_patient_side(side, monkeypatch):
    spec = PneumothoraxSpec(**{**MODERATE.__dict__, "side": side})
    plain = _render(5, pneumothorax=spec)
    assert plain.patient_orientation == ("L", "F") and plain.side == side
    # Patient right is on the image left when the rows run toward the patient's left.
    assert (_centre_column(plain.mask) < 0.45) == (side == "R")
    assert (_centre_column(plain.mask) > 0.55) == (side == "L")
    monkeypatch.setattr(phantom_module, "FLIP_PROBABILITY", 1.0)
    mirrored = _render(5, pneumothorax=spec)
    assert mirrored.patient_orientation == ("R", "F") and mirrored.side == side
    assert np.array_equal(mirrored.image, plain.image[:, ::-1])
    assert np.array_equal(mirrored.mask, plain.mask[:, ::-1])


def test_some_images_are_stored_mirrored():
    orientations = [_render(seed, rows=64, cols=64).patient_orientation for seed in range(40)]
    assert ("R", "F") in orientations
    assert orientations.count(("L", "F")) > 30


def _band_energy(image: np.ndarray) -> np.ndarray:
    """Energy at the scale of lung markings (a difference of Gaussians)."""
    image = image.astype(np.float64)
    return (ndimage.gaussian_filter(image, 0.7) - ndimage.gaussian_filter(image, 2.0)) ** 2


def test_pneumothorax_is_dark_air_without_lung_markings():
    # The same generator state renders the same anatomy with and without the lesion.
    positive = _render(2, rows=512, cols=512, pneumothorax=MODERATE)
    negative = _render(2, rows=512, cols=512, positive=False)
    core = ndimage.binary_erosion(positive.mask, iterations=8)
    assert core.sum() > 500
    # In the negative twin the region is aerated lung: darker than most of the image.
    assert negative.image[core].mean() < np.median(negative.image)
    assert positive.image[core].mean() < negative.image[core].mean() - 0.02
    # Ribs and noise stay; vessels and parenchyma go (darkening alone would raise it).
    energy_pos, energy_neg = _band_energy(positive.image), _band_energy(negative.image)
    assert energy_pos[core].mean() < 0.85 * energy_neg[core].mean()
    # ... and lower than in the rest of the same (collapsed) lung.
    near = ndimage.binary_dilation(positive.mask, iterations=40)
    lung = near & ~ndimage.binary_dilation(positive.mask, iterations=10)
    lung &= negative.image < np.median(negative.image)
    assert lung.sum() > 500
    assert energy_pos[core].mean() < 0.7 * energy_pos[lung].mean()


def test_pleural_line_is_brighter_than_the_air_beside_it():
    positive = _render(2, rows=512, cols=512, pneumothorax=MODERATE)
    negative = _render(2, rows=512, cols=512, positive=False)
    rim = ndimage.binary_dilation(positive.mask, iterations=3) & ~positive.mask
    inner = rim & (negative.image < np.percentile(negative.image, 35))
    assert inner.sum() > 50
    assert positive.image[inner].mean() > negative.image[inner].mean() + 0.01


def test_lateral_view_is_never_positive():
    lateral = _render(1, positive=True, view="LL")
    assert not lateral.positive and not lateral.mask.any() and lateral.side is None
    assert lateral.view == "LL" and lateral.patient_orientation[1] == "F"


def test_large_non_square_phantom():
    phantom = _render(9, rows=3000, cols=2500)
    assert phantom.image.shape == phantom.mask.shape == (3000, 2500)
    assert phantom.image.dtype == np.float32 and phantom.mask.any()
    assert phantom.image.min() >= 0.0 and phantom.image.max() <= 1.0


def test_bad_arguments_name_themselves():
    with pytest.raises(PhantomError, match="view"):
        _render(0, view="OBLIQUE")
    with pytest.raises(PhantomError, match="rows"):
        _render(0, rows=10)
    with pytest.raises(PhantomError, match="bits_stored"):
        DicomOptions(bits_stored=11)
    with pytest.raises(PhantomError, match="rescale"):
        DicomOptions(modality="DX", rescale=True)


@pytest.mark.parametrize("syntax", TRANSFER_SYNTAXES, ids=lambda uid: uid.name)
def test_every_syntax_and_depth_decodes_losslessly(syntax):
    phantom = _render(6, rows=97, cols=81)
    for bits in BITS_STORED:
        options = DicomOptions(bits_stored=bits, transfer_syntax=syntax)
        ds = _round_trip(_dataset(phantom, options))
        assert ds.file_meta.TransferSyntaxUID == syntax
        assert ds.BitsAllocated == (8 if bits == 8 else 16) and ds.BitsStored == bits
        pixels = ds.pixel_array
        assert pixels.shape == (97, 81)
        assert np.array_equal(pixels, stored_values(phantom, options))
        assert pixels.min() >= 0 and pixels.max() <= 2**bits - 1
        assert int(pixels.max()) - int(pixels.min()) > 2 ** (bits - 1)


def test_monochrome1_is_stored_inverted():
    phantom = _render(6, rows=128, cols=128)
    plain = _round_trip(_dataset(phantom, DicomOptions(photometric="MONOCHROME2")))
    inverted = _round_trip(_dataset(phantom, DicomOptions(photometric="MONOCHROME1")))
    assert inverted.PhotometricInterpretation == "MONOCHROME1"
    assert inverted.PresentationLUTShape == "INVERSE"
    top = 2**12 - 1
    assert np.array_equal(inverted.pixel_array, top - plain.pixel_array.astype(np.int64))
    assert np.corrcoef(inverted.pixel_array.ravel(), phantom.image.ravel())[0, 1] < -0.99


@pytest.mark.parametrize("modality", ["CR", "DX"])
def test_dataset_carries_the_tags_of_a_chest_radiograph(modality):
    phantom = _render(7, rows=128, cols=112)
    options = DicomOptions(modality=modality, rescale=modality == "CR", bits_stored=10)
    ds = _round_trip(_dataset(phantom, options))
    assert ds.Modality == modality and ds.BodyPartExamined == "CHEST"
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID
    assert ds.ViewPosition == phantom.view
    assert tuple(ds.PatientOrientation) == phantom.patient_orientation
    assert ds.Manufacturer == "Synthetic Phantom Co" and ds.PatientBirthDate == ""
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.5, 0.5]
    values = apply_modality_lut(ds.pixel_array, ds)
    low, high = np.percentile(values, [1, 99])
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    assert centre - width / 2 <= low and high <= centre + width / 2
    assert width < 1.5 * (values.max() - values.min())
    if modality == "CR":
        assert float(ds.RescaleSlope) != 1.0 and float(ds.RescaleIntercept) != 0.0
    else:
        assert ds.PresentationIntentType == "FOR PRESENTATION"
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)


@pytest.mark.peers
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
@pytest.mark.parametrize("modality", ["CR", "DX"])
def test_dciodvfy_finds_no_errors(modality, tmp_path):
    path = tmp_path / "phantom.dcm"
    options = DicomOptions(modality=modality, photometric="MONOCHROME1", rescale=modality == "CR")
    _dataset(_render(8, rows=128, cols=128), options).save_as(path, enforce_file_format=True)
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    messages = report.stdout + report.stderr
    assert "Error" not in messages and "Image" in messages


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_write_studies_layout_and_ground_truth(tmp_path):
    images = write_studies(tmp_path, studies=6, seed=11, prevalence=0.5, sizes=(96, 160))
    assert len({image.study_instance_uid for image in images}) == 6
    assert {p.name for p in tmp_path.iterdir()} == {i.study_instance_uid for i in images}
    for image in images:
        ds = pydicom.dcmread(image.path)
        assert image.path == tmp_path / image.study_instance_uid / f"{image.sop_instance_uid}.dcm"
        assert (ds.StudyInstanceUID, ds.SOPInstanceUID) == (
            image.study_instance_uid,
            image.sop_instance_uid,
        )
        assert ds.PatientName.family_name == "PHANTOM" and ds.PatientID.startswith("PHANTOM-")
        assert 96 <= ds.Rows <= 160 and 96 <= ds.Columns <= 160
        assert ds.ViewPosition == image.phantom.view
        if image.phantom.view == "LL":
            assert image.mask_path is None
            continue
        mask = np.asarray(Image.open(image.mask_path))
        assert mask.dtype == np.uint8 and mask.shape == (ds.Rows, ds.Columns)
        assert set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask > 0, image.phantom.mask)
    by_study: dict[str, set] = {}
    for image in images:
        if image.phantom.view != "LL":
            by_study.setdefault(image.study_instance_uid, set()).add(image.phantom.side)
    assert all(len(sides) == 1 for sides in by_study.values())
    labels = {next(iter(sides)) is not None for sides in by_study.values()}
    assert labels == {True, False}


def test_write_studies_is_deterministic_for_every_syntax(tmp_path):
    syntaxes = [ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless]
    first = write_studies(tmp_path / "a", studies=3, seed=4, sizes=(80, 120), syntaxes=syntaxes)
    write_studies(tmp_path / "b", studies=3, seed=4, sizes=(80, 120), syntaxes=syntaxes)
    write_studies(tmp_path / "c", studies=3, seed=5, sizes=(80, 120), syntaxes=syntaxes)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    assert _tree_bytes(tmp_path / "a").keys().isdisjoint(_tree_bytes(tmp_path / "c").keys())
    assert {i.options.transfer_syntax for i in first} <= set(syntaxes)


def test_write_studies_rejects_unknown_syntax(tmp_path):
    with pytest.raises(PhantomError, match="syntax"):
        write_studies(tmp_path, studies=1, syntaxes=["1.2.840.10008.1.2.4.50"])


def test_write_siim_png_layout(tmp_path):
    ids = write_siim_png(tmp_path, images=5, seed=2, prevalence=1.0, size=64)
    assert len(set(ids)) == 5
    assert sorted(p.stem for p in (tmp_path / "train").iterdir()) == sorted(ids)
    assert sorted(p.stem for p in (tmp_path / "masks").iterdir()) == sorted(ids)
    for image_id in ids:
        image = Image.open(tmp_path / "train" / f"{image_id}.png")
        mask = np.asarray(Image.open(tmp_path / "masks" / f"{image_id}.png"))
        assert image.mode == "L" and image.size == (64, 64)
        assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}
    assert write_siim_png(tmp_path / "again", images=5, seed=2, prevalence=1.0, size=64) == ids
