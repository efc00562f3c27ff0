"""Phantom training and evaluation data, made through the same DICOM path as inference.

Each phantom is rendered, written into an in-memory DICOM dataset with random modality,
photometric interpretation, bit depth and rescale, then read back with
:func:`triage.dicom.read.to_radiograph` and prepared with :func:`triage.preprocess.prepare`.
So a model trained here sees exactly what the cascade feeds it at inference.
"""

from __future__ import annotations

import datetime
import hashlib
import multiprocessing
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pydicom
from tqdm import tqdm

from training.phantoms import DicomOptions, Phantom, phantom_dataset, render_phantom
from training.trainset import TrainingSet, from_columns, prepared
from triage.dicom.read import Radiograph, to_radiograph
from triage.preprocess import Normalisation

STUDY_DATETIME = datetime.datetime(2026, 1, 1, 8, 0, 0)


def phantom_radiograph(
    seed: int, index: int, *, prevalence: float, sizes: tuple[int, int]
) -> tuple[Radiograph, Phantom, pydicom.Dataset]:
    """Render phantom ``index`` of ``seed`` and read it back through DICOM.

    The image size, modality, photometric interpretation, bit depth and rescale are drawn
    from the phantom's own random stream, so any phantom can be remade alone.
    """
    rng = np.random.default_rng([seed, index])
    rows = int(rng.integers(sizes[0], sizes[1] + 1))
    cols = int(np.clip(rows * rng.uniform(0.85, 1.2), sizes[0], sizes[1]))
    positive = bool(rng.random() < prevalence)
    phantom = render_phantom(rng, rows=rows, cols=cols, positive=positive)
    modality = str(rng.choice(["CR", "DX"]))
    options = DicomOptions(
        modality=modality,
        photometric=str(rng.choice(["MONOCHROME1", "MONOCHROME2"])),
        bits_stored=int(rng.choice([8, 10, 12, 15, 16])),
        rescale=modality == "CR" and bool(rng.random() < 0.5),  # DX must not rescale
    )
    uid = f"2.25.{int.from_bytes(hashlib.sha256(f'{seed}/{index}'.encode()).digest()[:15])}"
    ds = phantom_dataset(
        phantom,
        options=options,
        study_instance_uid=f"{uid}.1",
        series_instance_uid=f"{uid}.2",
        sop_instance_uid=f"{uid}.3",
        patient_id=f"PHANTOM-{index:05d}",
        patient_name=f"PHANTOM^Train{index:05d}",
        accession_number=f"PH{index:06d}",
        study_datetime=STUDY_DATETIME,
        pixel_spacing_mm=float(rng.uniform(380.0, 430.0) / cols),
    )
    return to_radiograph(ds), phantom, ds


def _sample(job: tuple):
    seed, index, prevalence, sizes, classifier_size, segmenter_size, normalisation = job
    radiograph, phantom, ds = phantom_radiograph(seed, index, prevalence=prevalence, sizes=sizes)
    inputs = prepared(
        radiograph.pixels,
        phantom.mask,
        classifier_size=classifier_size,
        segmenter_size=segmenter_size,
        normalisation=normalisation,
    )
    return (*inputs, phantom.positive, radiograph.sop_instance_uid, str(ds.PatientID))


def _parallel(jobs: list, worker, workers: int, label: str) -> Iterator:
    if workers <= 1:
        yield from tqdm(map(worker, jobs), total=len(jobs), desc=label, unit="img")
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        yield from tqdm(
            pool.imap(worker, jobs, chunksize=8), total=len(jobs), desc=label, unit="img"
        )


def make_phantom_set(
    *,
    images: int,
    seed: int,
    prevalence: float,
    classifier_size: tuple[int, int],
    segmenter_size: tuple[int, int],
    normalisation: Normalisation,
    sizes: tuple[int, int] = (512, 1024),
    workers: int = 2,
) -> TrainingSet:
    """Render ``images`` phantoms and prepare them as network inputs and targets.

    Each phantom is its own patient (PatientID ``PHANTOM-<index>``).
    """
    jobs = [
        (seed, i, prevalence, sizes, classifier_size, segmenter_size, normalisation)
        for i in range(images)
    ]
    return replace(from_columns(_parallel(jobs, _sample, workers, "phantoms")), synthetic=True)
