"""Synthetic chest radiographs with pneumothorax ground truth, as arrays, DICOM and PNG.

The phantoms let the whole pipeline be trained, tested, demonstrated and benchmarked
without patient data: :func:`render_phantom` draws one radiograph and its mask,
:func:`phantom_dataset` encodes it as CR or DX DICOM, :func:`write_studies` writes whole
studies with mask PNGs and :func:`write_siim_png` the SIIM 256-pixel PNG layout.
"""

from training.phantoms.dicomio import DicomOptions, phantom_dataset, stored_values
from training.phantoms.errors import PhantomError
from training.phantoms.phantom import Phantom, render_phantom
from training.phantoms.pneumothorax import PneumothoraxSpec, sample_pneumothorax
from training.phantoms.studies import PhantomImage, write_siim_png, write_studies

__all__ = [
    "DicomOptions",
    "Phantom",
    "PhantomError",
    "PhantomImage",
    "PneumothoraxSpec",
    "phantom_dataset",
    "render_phantom",
    "sample_pneumothorax",
    "stored_values",
    "write_siim_png",
    "write_studies",
]
