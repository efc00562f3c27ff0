"""Phantom data sets on disk: DICOM studies with mask PNGs, and the SIIM 256-pixel PNG layout.

Every image draws from its own generator, ``np.random.default_rng([seed, study, image])``
(``[seed, index]`` for SIIM PNGs), so any one image can be regenerated alone and the same
call writes bit-identical files.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian

from training.phantoms.dicomio import (
    BITS_STORED,
    TRANSFER_SYNTAXES,
    DicomOptions,
    phantom_dataset,
)
from training.phantoms.errors import PhantomError
from training.phantoms.phantom import Phantom, render, render_phantom
from training.phantoms.pneumothorax import PneumothoraxSpec, sample_pneumothorax, vary

#: Chance of each bit depth in :data:`BITS_STORED` order.
_BITS_WEIGHTS = (0.1, 0.2, 0.35, 0.1, 0.25)
#: Chest width in millimetres, from which the pixel spacing follows.
_CHEST_MM = (350.0, 430.0)
_FIRST_DAY = datetime.datetime(2024, 1, 1, 8, 0, 0)


@dataclass(frozen=True, kw_only=True)
class PhantomImage:
    """One image written by :func:`write_studies`.

    Parameters
    ----------
    path
        The ``.dcm`` file.
    mask_path
        The ``.mask.png`` beside it for frontal images; None for laterals.
    phantom
        The rendered phantom, pixels and ground truth.
    options
        How it was encoded.
    sop_instance_uid, study_instance_uid
        Its UIDs.
    """

    path: Path
    mask_path: Path | None
    phantom: Phantom
    options: DicomOptions
    sop_instance_uid: str
    study_instance_uid: str


def _uid(*parts: object) -> str:
    """A UUID-derived ``2.25.`` UID that depends only on ``parts``."""
    digest = hashlib.sha256("/".join(["training.phantoms", *map(str, parts)]).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _options(rng: np.random.Generator, syntaxes: Sequence[str]) -> DicomOptions:
    modality = "CR" if rng.random() < 0.4 else "DX"
    weights = np.array([3.0 if s == ExplicitVRLittleEndian else 1.0 for s in syntaxes])
    return DicomOptions(
        modality=modality,
        photometric="MONOCHROME1" if rng.random() < 0.25 else "MONOCHROME2",
        bits_stored=int(rng.choice(BITS_STORED, p=_BITS_WEIGHTS)),
        transfer_syntax=str(rng.choice(list(syntaxes), p=weights / weights.sum())),
        rescale=modality == "CR" and rng.random() < 0.5,
    )


def _size(rng: np.random.Generator, sizes: tuple[int, int]) -> tuple[int, int]:
    low, high = sizes
    rows = int(rng.integers(low, high + 1))
    cols = int(np.clip(round(rows * rng.uniform(0.8, 1.25)), low, high))
    return rows, cols


def _check(name: str, count: int, seed: int, prevalence: float, sizes: tuple[int, int]) -> None:
    if not isinstance(count, int) or count < 0:
        raise PhantomError(f"{name} must be a non-negative integer, got {count!r}")
    if not isinstance(seed, int) or seed < 0:
        raise PhantomError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= prevalence <= 1.0:
        raise PhantomError(f"prevalence must be between 0 and 1, got {prevalence!r}")
    if len(sizes) != 2 or not 64 <= sizes[0] <= sizes[1] <= 16384:
        raise PhantomError(
            f"sizes must be (low, high) with 64 <= low <= high <= 16384, got {sizes!r}"
        )


@dataclass(frozen=True, kw_only=True)
class _Study:
    index: int
    uid: str
    views: tuple[str, ...]
    pneumothorax: PneumothoraxSpec | None
    when: datetime.datetime
    sex: str


def _study(seed: int, index: int, prevalence: float) -> _Study:
    rng = np.random.default_rng([seed, index])
    positive = rng.random() < prevalence
    views = ["PA" if rng.random() < 0.75 else "AP"]
    if rng.random() < 0.25:
        views.append("AP" if views[0] == "PA" or rng.random() < 0.5 else "PA")
    if rng.random() < 0.3:
        views.append("LL")
    when = _FIRST_DAY + datetime.timedelta(
        days=int(rng.integers(0, 365)), minutes=int(rng.integers(0, 10 * 60))
    )
    return _Study(
        index=index,
        uid=_uid(seed, "study", index),
        views=tuple(views),
        pneumothorax=sample_pneumothorax(rng) if positive else None,
        when=when,
        sex="M" if rng.random() < 0.5 else "F",
    )


def _write_image(
    out_dir: Path, seed: int, study: _Study, number: int, *, sizes: tuple, syntaxes: Sequence[str]
) -> PhantomImage:
    rng = np.random.default_rng([seed, study.index, number])
    view = study.views[number]
    spec = study.pneumothorax
    if spec is not None and number > 0:
        spec = vary(spec, rng)
    rows, cols = _size(rng, sizes)
    options = _options(rng, syntaxes)
    phantom, chest_px = render(
        rng, rows=rows, cols=cols, positive=spec is not None, view=view, pneumothorax=spec
    )
    sop_uid = _uid(seed, "image", study.index, number)
    ds = phantom_dataset(
        phantom,
        options=options,
        study_instance_uid=study.uid,
        series_instance_uid=_uid(seed, "series", study.index, number),
        sop_instance_uid=sop_uid,
        patient_id=f"PHANTOM-{study.index + 1:04d}",
        patient_name=f"PHANTOM^Case{study.index + 1:04d}",
        accession_number=f"PH{seed % 10000:04d}{study.index + 1:06d}",
        study_datetime=study.when,
        pixel_spacing_mm=rng.uniform(*_CHEST_MM) / chest_px,
        patient_sex=study.sex,
        series_number=number + 1,
    )
    folder = out_dir / study.uid
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sop_uid}.dcm"
    ds.save_as(path, enforce_file_format=True)
    mask_path = None
    if view != "LL":
        mask_path = folder / f"{sop_uid}.mask.png"
        Image.fromarray(phantom.mask.astype(np.uint8) * 255).save(mask_path)
    return PhantomImage(
        path=path,
        mask_path=mask_path,
        phantom=phantom,
        options=options,
        sop_instance_uid=sop_uid,
        study_instance_uid=study.uid,
    )


def write_studies(
    out_dir: Path,
    *,
    studies: int,
    seed: int = 0,
    prevalence: float = 0.3,
    sizes: tuple[int, int] = (512, 3000),
    syntaxes: Sequence[str] | None = None,
) -> list[PhantomImage]:
    """Write phantom DICOM studies and the ground-truth mask of each frontal image.

    Layout: ``out_dir/<StudyInstanceUID>/<SOPInstanceUID>.dcm`` and, for frontal images,
    ``<SOPInstanceUID>.mask.png`` (uint8 0/255, same rows and columns). A study holds a PA
    or AP image, sometimes a second frontal and sometimes a lateral; in a positive study
    every frontal image shows the same pneumothorax, a little bigger or smaller.

    Parameters
    ----------
    out_dir
        Where to write; created if missing.
    studies
        How many studies.
    seed
        Non-negative seed; the same arguments write bit-identical files.
    prevalence
        Chance that a study is positive.
    sizes
        Smallest and largest rows or columns.
    syntaxes
        Transfer syntaxes to draw from (Explicit VR Little Endian, when listed, three
        times as often as each other); default Explicit VR LE, RLE and JPEG 2000 Lossless.

    Returns
    -------
    list of PhantomImage
        Every image written, with its phantom kept in memory.

    Raises
    ------
    PhantomError
        If an argument is out of range or a transfer syntax is not supported.
    """
    _check("studies", studies, seed, prevalence, sizes)
    syntaxes = list(syntaxes or TRANSFER_SYNTAXES[:1] + TRANSFER_SYNTAXES[2:])
    for syntax in syntaxes:
        if syntax not in TRANSFER_SYNTAXES:
            raise PhantomError(f"syntaxes holds an unsupported transfer syntax {syntax!r}")
    out_dir = Path(out_dir)
    images = []
    for index in range(studies):
        study = _study(seed, index, prevalence)
        for number in range(len(study.views)):
            images.append(
                _write_image(out_dir, seed, study, number, sizes=sizes, syntaxes=syntaxes)
            )
    return images


def write_siim_png(
    out_dir: Path, *, images: int, seed: int = 0, prevalence: float = 0.3, size: int = 256
) -> list[str]:
    """Write frontal phantoms in the SIIM 256-pixel PNG layout.

    ``out_dir/train/<ImageId>.png`` holds the 8-bit grey image and
    ``out_dir/masks/<ImageId>.png`` the mask (0/255). Image ``i`` is drawn from
    ``np.random.default_rng([seed, i])``; a quarter of the images are AP.

    Returns
    -------
    list of str
        The ImageIds, in order.

    Raises
    ------
    PhantomError
        If an argument is out of range.
    """
    _check("images", images, seed, prevalence, (size, size))
    train, masks = Path(out_dir) / "train", Path(out_dir) / "masks"
    train.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "PHANTOMS.txt").write_text(
        f"Synthetic chest phantoms (seed {seed}) written by `triage synth --siim-png`.\n"
        "Not radiographs of people: a model trained on them is marked synthetic.\n",
        encoding="utf-8",
    )
    ids = []
    for index in range(images):
        rng = np.random.default_rng([seed, index])
        positive = bool(rng.random() < prevalence)
        view = "AP" if rng.random() < 0.25 else "PA"
        phantom = render_phantom(rng, rows=size, cols=size, positive=positive, view=view)
        image_id = _uid(seed, "siim", index)
        grey = np.rint(phantom.image * 255.0).astype(np.uint8)
        Image.fromarray(grey).save(train / f"{image_id}.png")
        Image.fromarray(phantom.mask.astype(np.uint8) * 255).save(masks / f"{image_id}.png")
        ids.append(image_id)
    return ids
