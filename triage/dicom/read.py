"""Reading radiographs: a DICOM file in, display-ready grey levels in [0, 1] out.

The pipeline follows the DICOM grayscale chain (PS3.4 N.2.1.1): stored values, Modality LUT
or rescale, then the first VOI LUT or window (or the value range when the object has
neither), then MONOCHROME1 inversion, so that 1 is always the brightest (bone) and 0 the
darkest (air). Every check that can be made from the header runs before decoding.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from triage.dicom.display import to_display
from triage.dicom.values import finite_float
from triage.errors import (
    EmptyImageError,
    NoPixelDataError,
    NotDicomError,
    ReadError,
    TruncatedPixelDataError,
    UnsupportedImageError,
)

__all__ = ["Radiograph", "read_dataset", "read_radiograph", "to_radiograph"]

logger = logging.getLogger(__name__)

#: Photometric interpretations of greyscale images; everything else is colour.
GREYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})
#: Bits Allocated values we decode (1-bit images are not radiographs).
SUPPORTED_BITS_ALLOCATED = frozenset({8, 16, 32})
#: Letters of the patient direction codes in Patient Orientation (PS3.3 C.7.6.1.1.1).
ORIENTATION_LETTERS = frozenset("APRLHF")

# Codestreams of these end with an EOI (JPEG, JPEG-LS) or EOC (JPEG 2000) marker, both FFD9.
_FFD9_SYNTAXES = frozenset(
    [*JPEGTransferSyntaxes, *JPEGLSTransferSyntaxes, *JPEG2000TransferSyntaxes]
)
# The pylibjpeg plugin that decodes each compressed transfer syntax.
_PLUGINS = {
    **dict.fromkeys([*JPEGTransferSyntaxes, *JPEGLSTransferSyntaxes], "pylibjpeg-libjpeg"),
    **dict.fromkeys(JPEG2000TransferSyntaxes, "pylibjpeg-openjpeg"),
    RLELossless: "pylibjpeg-rle",
}
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True, kw_only=True, eq=False)
class Radiograph:
    """One greyscale radiograph, ready for display or a network.

    ``pixels`` is float32 with shape (Rows, Columns) exactly as stored, values in [0, 1],
    1 the brightest (bone) and 0 the darkest (air). ``spacing_mm`` is (row spacing,
    column spacing) from Pixel Spacing, else Imager Pixel Spacing, else None.
    ``patient_orientation`` is None when absent or malformed.

    Raises
    ------
    ValueError
        If ``pixels`` is not a two-dimensional float32 array.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None
    photometric: str
    bits_stored: int
    modality: str
    view_position: str | None
    patient_orientation: tuple[str, str] | None
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str

    def __post_init__(self) -> None:
        if self.pixels.ndim != 2 or self.pixels.dtype != np.float32:
            raise ValueError(
                f"pixels must be a 2-D float32 array, got {self.pixels.ndim}-D {self.pixels.dtype}"
            )


def read_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Read a DICOM file without decoding its pixels.

    Files without the 128-byte preamble and ``DICM`` prefix are accepted when they parse
    as a raw data set carrying a SOP Class UID or Rows, Columns and Pixel Data.

    Raises
    ------
    ReadError
        If the file cannot be opened, or has a DICOM header but no data set after it.
    NotDicomError
        If the file is not DICOM (no ``DICM`` prefix and no recognisable data set).
    TruncatedPixelDataError
        If the file ends inside the Pixel Data element.
    """
    path = Path(path)
    try:
        with path.open("rb") as fp:
            head = fp.read(132)
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    has_prefix = head[128:132] == b"DICM"
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # pydicom raises many kinds on bytes that are not DICOM
        if has_prefix:
            raise ReadError(f"cannot parse {path} as DICOM: {exc}") from exc
        raise NotDicomError(f"{path} is not a DICOM file: {exc}") from exc
    if not has_prefix and not _has_core_tags(ds):
        raise NotDicomError(
            f"{path} is not a DICOM file: no 'DICM' prefix at byte 128 and no SOP Class UID "
            "or Rows, Columns and Pixel Data in it"
        )
    if "PixelData" not in ds and (len(ds) == 0 or "Rows" in ds) and _pixel_data_cut_short(path):
        raise TruncatedPixelDataError(f"{path} ends inside its Pixel Data element")
    if has_prefix and len(ds) == 0:
        # pydicom drops the whole data set, with a warning, when the file ends early
        raise ReadError(f"{path} has a DICOM header but no readable data set: it is truncated")
    return ds


def to_radiograph(ds: Dataset) -> Radiograph:
    """Check a data set's image attributes, decode its pixels and map them to [0, 1].

    Raises
    ------
    NoPixelDataError
        If there is no Pixel Data element.
    EmptyImageError
        If Rows or Columns is 0.
    UnsupportedImageError
        For colour, multi-frame or otherwise unsupported pixel layouts.
    TruncatedPixelDataError
        If the pixel data is shorter than the header says.
    ReadError
        If a required attribute is missing or the pixel data cannot be decoded.
    """
    rows, columns, photometric, bits_stored = _check_image(ds)
    tsyntax = _transfer_syntax(ds)
    _check_pixel_data_length(ds, tsyntax, rows, columns)
    stored = _decode(ds, tsyntax)
    pixels = to_display(stored, ds)
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), pixels, out=pixels)
    return Radiograph(
        pixels=pixels,
        spacing_mm=_spacing(ds),
        photometric=photometric,
        bits_stored=bits_stored,
        modality=str(ds.get("Modality") or ""),
        view_position=str(ds.get("ViewPosition") or "").strip() or None,
        patient_orientation=_patient_orientation(ds),
        sop_instance_uid=str(ds.get("SOPInstanceUID") or ""),
        sop_class_uid=str(ds.get("SOPClassUID") or ""),
        series_instance_uid=str(ds.get("SeriesInstanceUID") or ""),
        study_instance_uid=str(ds.get("StudyInstanceUID") or ""),
    )


def read_radiograph(path: str | os.PathLike[str]) -> tuple[Dataset, Radiograph]:
    """Read a DICOM file and decode it: :func:`read_dataset` then :func:`to_radiograph`.

    Raises
    ------
    ReadError
        Or one of its subclasses, as the two functions raise them.
    """
    ds = read_dataset(path)
    return ds, to_radiograph(ds)


def _has_core_tags(ds: Dataset) -> bool:
    return "SOPClassUID" in ds or all(k in ds for k in ("Rows", "Columns", "PixelData"))


def _pixel_data_cut_short(path: Path) -> bool:
    """Whether the file holds a Pixel Data header whose value runs past the end of file.

    pydicom drops the whole data set, with only a warning, when encapsulated Pixel Data has
    no sequence delimiter, so a cut compressed file would otherwise read as empty.
    """
    data = path.read_bytes()
    for tag, fmt in ((b"\xe0\x7f\x10\x00", "<"), (b"\x7f\xe0\x00\x10", ">")):
        at = data.rfind(tag)
        if at < 0:
            continue
        rest = data[at + 4 :]
        if len(rest) < 8:
            return True
        if rest[:2] in (b"OB", b"OW") and rest[2:4] == b"\x00\x00":
            length = struct.unpack(fmt + "I", rest[4:8])[0]
            value_size = len(rest) - 8
        else:
            length = struct.unpack(fmt + "I", rest[:4])[0]
            value_size = len(rest) - 4
        if length == _UNDEFINED_LENGTH or length > value_size:
            return True
    return False


def _check_image(ds: Dataset) -> tuple[int, int, str, int]:
    """Check the Image Pixel attributes; return rows, columns, photometric, bits stored."""
    if "PixelData" not in ds:
        raise NoPixelDataError("the data set has no Pixel Data (7FE0,0010) element")
    missing = [
        k
        for k in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")
        if ds.get(k) in (None, "")
    ]
    if missing:
        raise ReadError(f"the image lacks required attributes: {', '.join(missing)}")
    rows, columns = int(ds.Rows), int(ds.Columns)
    if rows == 0 or columns == 0:
        raise EmptyImageError(f"the image is empty: Rows is {rows}, Columns is {columns}")
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    samples = int(ds.get("SamplesPerPixel") or 1)
    if photometric not in GREYSCALE:
        raise UnsupportedImageError(
            f"colour image ({photometric}): only greyscale radiographs are analysed"
        )
    if samples != 1:
        raise UnsupportedImageError(
            f"Samples per Pixel is {samples}: only greyscale radiographs (1 sample) are analysed"
        )
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise UnsupportedImageError(
            f"multi-frame image ({frames} frames): only single-frame radiographs are analysed"
        )
    bits_allocated = int(ds.BitsAllocated)
    bits_stored = int(ds.get("BitsStored") or bits_allocated)
    if bits_allocated not in SUPPORTED_BITS_ALLOCATED or not 1 <= bits_stored <= bits_allocated:
        raise UnsupportedImageError(
            f"Bits Allocated {bits_allocated} with Bits Stored {bits_stored} is not supported: "
            f"Bits Allocated must be one of {sorted(SUPPORTED_BITS_ALLOCATED)} and Bits Stored "
            "between 1 and Bits Allocated"
        )
    return rows, columns, photometric, bits_stored


def _transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax from the file meta, else inferred for native raw data sets."""
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if tsyntax:
        return UID(str(tsyntax))
    if not ds["PixelData"].is_undefined_length:
        implicit, little = ds.original_encoding
        if little is False:
            return ExplicitVRBigEndian
        if little:
            return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    raise ReadError("the data set has no Transfer Syntax UID and its encoding is unknown")


def _check_pixel_data_length(ds: Dataset, tsyntax: UID, rows: int, columns: int) -> None:
    """Raise TruncatedPixelDataError when the pixel data cannot hold the whole image."""
    data = ds.PixelData
    if not tsyntax.is_encapsulated:
        bits = int(ds.BitsAllocated)
        expected = rows * columns * bits // 8
        if len(data) < expected:
            raise TruncatedPixelDataError(
                f"pixel data has {len(data)} bytes, but Rows x Columns x BitsAllocated/8 = "
                f"{rows} x {columns} x {bits}/8 = {expected}"
            )
        return
    last = _last_fragment(data)
    if tsyntax in _FFD9_SYNTAXES and not last.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise TruncatedPixelDataError(
            f"the {tsyntax.name} codestream does not end with the FFD9 end marker: "
            "the pixel data is truncated"
        )


def _last_fragment(data: bytes) -> bytes:
    """The last fragment of encapsulated pixel data, checking every item is complete."""
    offset, last, items = 0, (0, 0), 0
    while offset + 8 <= len(data):
        tag = data[offset : offset + 4]
        (length,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        if tag == _SEQUENCE_DELIMITER:
            break
        if tag != _ITEM_TAG:
            raise ReadError(f"encapsulated pixel data has a bad item tag at byte {offset}")
        if offset + 8 + length > len(data):
            raise TruncatedPixelDataError(
                f"encapsulated pixel data item at byte {offset} declares {length} bytes, but "
                f"only {len(data) - offset - 8} follow"
            )
        last = (offset + 8, length)
        offset, items = offset + 8 + length, items + 1
    if items < 2 or not last[1]:
        raise TruncatedPixelDataError(
            f"encapsulated pixel data has {max(items - 1, 0)} fragments after the offset "
            "table and no image data"
        )
    return data[last[0] : last[0] + last[1]]


def _decode(ds: Dataset, tsyntax: UID) -> np.ndarray:
    """Decode the stored values of the one frame, wrapping decoder failures in ReadError."""
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise ReadError(
            f"pixel data compressed as {tsyntax.name} ({tsyntax}) cannot be decoded: pydicom "
            "has no decoder for it; convert the file to an uncompressed transfer syntax first"
        ) from exc
    try:
        stored, _ = decoder.as_array(ds)
    except MemoryError:
        raise
    except Exception as exc:  # decoder plugins raise RuntimeError, ValueError, OSError...
        raise ReadError(
            f"cannot decode pixel data encoded as {tsyntax.name} ({tsyntax}): {exc} "
            + (
                f"(if the plugin is missing: pip install pylibjpeg {_PLUGINS[tsyntax]})"
                if tsyntax in _PLUGINS
                else "(the pixel data is corrupt)"
            )
        ) from exc
    if stored.ndim != 2:
        raise UnsupportedImageError(f"decoded pixel array has shape {stored.shape}, not 2-D")
    return stored


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    """Pixel Spacing if valid (two positive numbers), else Imager Pixel Spacing, else None."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if not isinstance(value, list | tuple | MultiValue) or len(value) != 2:
            continue
        pair = [finite_float(v, default=None) for v in value]
        if all(v is not None and v > 0 for v in pair):
            return (float(pair[0]), float(pair[1]))  # type: ignore[arg-type]
    return None


def _patient_orientation(ds: Dataset) -> tuple[str, str] | None:
    value = ds.get("PatientOrientation")
    if not isinstance(value, list | tuple | MultiValue) or len(value) != 2:
        return None
    row, column = (str(v).strip().upper() for v in value)
    if not row or not column or not set(row + column) <= ORIENTATION_LETTERS:
        return None
    return (row, column)
