"""Reading radiographs: pixel pipeline, compression, real chest images and bad inputs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_windowing
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
)

from tests.factory import make_dataset, ramp, write
from triage.dicom.read import Radiograph, read_dataset, read_radiograph, to_radiograph
from triage.errors import (
    EmptyImageError,
    NoPixelDataError,
    NotDicomError,
    ReadError,
    TruncatedPixelDataError,
    UnsupportedImageError,
)


@pytest.fixture
def real(shared_data: Path) -> Path:
    """The real/ folder of ../shared/data (the fixture skips when it is absent)."""
    return shared_data / "real"


# --- pixel pipeline -----------------------------------------------------------------------


def test_rescale_is_applied_before_the_window() -> None:
    stored = np.array([[0, 1000, 2000, 2000]], dtype=np.int64).repeat(2, axis=0)
    ds = make_dataset(pixels=stored, RescaleSlope=2, RescaleIntercept=-1000)
    # Modality values -1000, 1000, 3000; the window spans exactly -1000 .. 3000.
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 1000, 4000, "LINEAR_EXACT"
    pixels = to_radiograph(ds).pixels
    np.testing.assert_allclose(pixels[0], [0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_linear_window_matches_pydicom_and_is_normalised_by_its_bounds() -> None:
    ds = make_dataset(rows=64, columns=64, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2048, 1024
    pixels = to_radiograph(ds).pixels
    # pydicom maps the window onto the 12-bit output range 0 .. 4095.
    reference = apply_windowing(ds.pixel_array, ds) / 4095
    np.testing.assert_allclose(pixels, reference, atol=1e-5)
    stored = ds.pixel_array
    assert pixels[stored < 1536].max() == 0.0
    assert pixels[stored > 2560].min() == 1.0
    assert 0.0 < pixels[stored == 2048].mean() < 1.0


def test_first_of_several_windows_is_used() -> None:
    ds = make_dataset(rows=64, columns=64, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = [1000, 3000], [200, 4000]
    pixels = to_radiograph(ds).pixels
    stored = ds.pixel_array
    assert pixels[stored > 1100].min() == 1.0
    assert pixels[stored < 900].max() == 0.0


def test_sigmoid_window_is_one_half_at_the_centre() -> None:
    ds = make_dataset(pixels=np.array([[0, 2048, 4095]]).repeat(2, axis=0), bits_stored=12)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 2048, 1000, "SIGMOID"
    pixels = to_radiograph(ds).pixels[0]
    assert pixels[1] == pytest.approx(0.5)
    assert pixels[0] < 0.01 and pixels[2] > 0.99


def test_voi_lut_sequence_is_applied_and_preferred_to_the_window() -> None:
    ds = make_dataset(rows=64, columns=64, bits_stored=12)
    lut = (np.sqrt(np.arange(4096) / 4095) * 1000 + 100).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = lut.tolist()
    ds.VOILUTSequence = [item]
    ds.WindowCenter, ds.WindowWidth = 100, 10
    pixels = to_radiograph(ds).pixels
    expected = (lut[ds.pixel_array] - 100) / (lut.max() - 100)
    np.testing.assert_allclose(pixels, expected, atol=1e-6)


def test_without_voi_the_value_range_is_stretched() -> None:
    stored = np.array([[100, 300, 500]]).repeat(2, axis=0)
    pixels = to_radiograph(make_dataset(pixels=stored, bits_stored=12)).pixels
    np.testing.assert_allclose(pixels[0], [0.0, 0.5, 1.0])


def test_monochrome1_is_the_inverse_of_monochrome2() -> None:
    for window in ({}, {"WindowCenter": 1500, "WindowWidth": 2000}):
        mono2 = to_radiograph(make_dataset(**window)).pixels
        mono1 = to_radiograph(make_dataset(photometric="MONOCHROME1", **window)).pixels
        np.testing.assert_array_equal(mono1, 1.0 - mono2)
        assert mono2.std() > 0.1


@pytest.mark.parametrize("bits", [8, 10, 12, 15, 16])
def test_bit_depths_use_the_whole_stored_range(bits: int) -> None:
    top = 2**bits - 1
    radiograph = to_radiograph(make_dataset(bits_stored=bits))
    assert radiograph.bits_stored == bits
    assert radiograph.pixels.dtype == np.float32
    assert radiograph.pixels[0, 0] == 0.0 and radiograph.pixels[-1, -1] == 1.0
    assert np.all(np.diff(radiograph.pixels.ravel()) >= 0)
    # A window over the nominal range keeps the true top of the range near 1.
    windowed = make_dataset(bits_stored=bits, WindowCenter=(top + 1) / 2, WindowWidth=top + 1)
    pixels = to_radiograph(windowed).pixels
    assert pixels[-1, -1] == pytest.approx(1.0, abs=1.5 / top)
    assert pixels[0, 0] == pytest.approx(0.0, abs=1.5 / top)


def test_bits_above_bits_stored_are_ignored() -> None:
    stored = ramp(8, 8, 12)
    ds = make_dataset(pixels=stored | 0xF000, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    clean = make_dataset(pixels=stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    np.testing.assert_array_equal(to_radiograph(ds).pixels, to_radiograph(clean).pixels)


def test_signed_pixels_keep_their_sign() -> None:
    stored = np.array([[-2048, 0, 2047]]).repeat(2, axis=0)
    pixels = to_radiograph(make_dataset(pixels=stored, bits_stored=12, signed=True)).pixels
    np.testing.assert_allclose(pixels[0], [0.0, 2048 / 4095, 1.0], atol=1e-6)


def test_shape_is_rows_by_columns_never_transposed() -> None:
    stored = np.zeros((300, 500), dtype=np.int64)
    stored[10, 400] = 4095
    stored[290, 3] = 2000
    radiograph = to_radiograph(make_dataset(pixels=stored))
    assert radiograph.pixels.shape == (300, 500)
    assert np.unravel_index(radiograph.pixels.argmax(), (300, 500)) == (10, 400)
    assert radiograph.pixels[290, 3] == pytest.approx(2000 / 4095)


# --- header attributes --------------------------------------------------------------------


def test_spacing_comes_from_pixel_spacing_first() -> None:
    ds = make_dataset(PixelSpacing=[0.2, 0.3], ImagerPixelSpacing=[0.25, 0.25])
    assert to_radiograph(ds).spacing_mm == (0.2, 0.3)


def test_spacing_falls_back_to_imager_pixel_spacing() -> None:
    assert to_radiograph(make_dataset(ImagerPixelSpacing=[0.139, 0.14])).spacing_mm == (
        0.139,
        0.14,
    )
    # RG1 carries Pixel Spacing 0.000\0.000: zero is no spacing.
    ds = make_dataset(PixelSpacing=[0, 0], ImagerPixelSpacing=[0.1, 0.1])
    assert to_radiograph(ds).spacing_mm == (0.1, 0.1)
    assert to_radiograph(make_dataset()).spacing_mm is None


def test_header_fields_are_copied() -> None:
    ds = make_dataset(ViewPosition="AP ", PatientOrientation=["P", "FL"])
    radiograph = to_radiograph(ds)
    assert radiograph.view_position == "AP"
    assert radiograph.patient_orientation == ("P", "FL")
    assert radiograph.sop_instance_uid == ds.SOPInstanceUID
    assert radiograph.series_instance_uid == ds.SeriesInstanceUID
    assert radiograph.study_instance_uid == ds.StudyInstanceUID
    assert radiograph.sop_class_uid == ds.SOPClassUID
    assert (radiograph.modality, radiograph.photometric) == ("DX", "MONOCHROME2")


@pytest.mark.parametrize("orientation", [None, "", ["L"], ["L", "X"], ["L", "F", "A"]])
def test_malformed_or_missing_orientation_is_none(orientation: object) -> None:
    ds = make_dataset(PatientOrientation=orientation, ViewPosition=None)
    radiograph = to_radiograph(ds)
    assert radiograph.patient_orientation is None
    assert radiograph.view_position is None


def test_radiograph_rejects_pixels_that_are_not_2d_float32() -> None:
    fields = {k: "" for k in ("photometric", "modality", "sop_instance_uid", "sop_class_uid")}
    fields |= {"series_instance_uid": "", "study_instance_uid": ""}
    with pytest.raises(ValueError, match="2-D float32"):
        Radiograph(
            pixels=np.zeros((4, 4)),
            spacing_mm=None,
            bits_stored=8,
            view_position=None,
            patient_orientation=None,
            **fields,
        )


# --- compression --------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "j2k"])
def test_lossless_compression_decodes_to_the_same_pixels(
    bits: int, syntax: pydicom.uid.UID, tmp_path: Path
) -> None:
    rng = np.random.default_rng(bits)
    stored = rng.integers(0, 2**bits, size=(64, 96))
    plain = make_dataset(pixels=stored, bits_stored=bits)
    packed = make_dataset(pixels=stored, bits_stored=bits)
    packed.compress(syntax)
    ds, radiograph = read_radiograph(write(packed, tmp_path / "packed.dcm"))
    assert ds.file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(radiograph.pixels, to_radiograph(plain).pixels)


@pytest.mark.peers
@pytest.mark.parametrize("bits", [12, 16])
def test_jpeg_lossless_sv1_from_dcmtk_decodes_to_the_same_pixels(
    bits: int, tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    dcmcjpeg = require_tool("dcmcjpeg")
    plain = write(make_dataset(bits_stored=bits, rows=80, columns=120), tmp_path / "plain.dcm")
    packed = tmp_path / "sv1.dcm"
    subprocess.run([dcmcjpeg, "+e1", str(plain), str(packed)], check=True, timeout=30)
    ds, radiograph = read_radiograph(packed)
    assert ds.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    np.testing.assert_array_equal(radiograph.pixels, read_radiograph(plain)[1].pixels)


# --- real chest radiographs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def rg1() -> tuple[Dataset, Radiograph]:
    return read_radiograph(get_testdata_file("RG1_UNCR.dcm"))


def test_rg1_header(rg1: tuple[Dataset, Radiograph]) -> None:
    _, radiograph = rg1
    assert radiograph.pixels.shape == (1955, 1841)
    assert (radiograph.photometric, radiograph.bits_stored) == ("MONOCHROME1", 15)
    assert radiograph.spacing_mm is None  # stored as 0.000\0.000
    assert radiograph.patient_orientation == ("L", "F")
    assert (radiograph.modality, radiograph.view_position) == ("CR", "PA")


def test_rg1_monochrome1_is_inverted_lungs_dark(rg1: tuple[Dataset, Radiograph]) -> None:
    pixels = rg1[1].pixels
    columns = pixels.shape[1]
    centre = pixels[:, 2 * columns // 5 : 3 * columns // 5].mean()
    lateral = np.concatenate([pixels[:, : columns // 3], pixels[:, -columns // 3 :]], 1).mean()
    assert centre > lateral + 0.05
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0


def test_rg1_jpeg2000_lossless_equals_uncompressed(rg1: tuple[Dataset, Radiograph]) -> None:
    _, radiograph = read_radiograph(get_testdata_file("RG1_J2KR.dcm"))
    np.testing.assert_array_equal(radiograph.pixels, rg1[1].pixels)


def test_rg1_jpeg2000_lossy_is_close(rg1: tuple[Dataset, Radiograph]) -> None:
    _, radiograph = read_radiograph(get_testdata_file("RG1_J2KI.dcm"))
    difference = np.abs(radiograph.pixels - rg1[1].pixels)
    assert 0 < difference.mean() < 0.02


def test_nih_secondary_capture_dx(real: Path) -> None:
    ds, radiograph = read_radiograph(real / "nih-cxr14-dx-no-finding.dcm")
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert radiograph.pixels.shape == (1024, 1024)
    assert (radiograph.modality, radiograph.view_position) == ("DX", None)
    assert radiograph.spacing_mm is None
    assert radiograph.pixels.min() == 0.0 and radiograph.pixels.max() == 1.0


def test_siim_jpeg_baseline(real: Path) -> None:
    ds, radiograph = read_radiograph(real / "siim-cr-negative.dcm")
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert radiograph.pixels.shape == (1024, 1024)
    assert radiograph.spacing_mm == (0.168, 0.168)
    assert radiograph.patient_orientation is None  # present but empty
    assert 0.3 < radiograph.pixels.mean() < 0.8


def test_siim_monochrome1_is_exactly_inverted(real: Path) -> None:
    _, mono2 = read_radiograph(real / "siim-cr-negative.dcm")
    _, mono1 = read_radiograph(real / "siim-cr-negative-monochrome1.dcm")
    assert mono1.photometric == "MONOCHROME1"
    np.testing.assert_allclose(mono1.pixels, 1.0 - mono2.pixels, atol=1e-6)


# --- bad inputs ---------------------------------------------------------------------------


def test_native_file_cut_in_half_is_truncated(tmp_path: Path) -> None:
    path = write(make_dataset(rows=300, columns=500), tmp_path / "full.dcm")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedPixelDataError, match=r"Rows x Columns x BitsAllocated/8 = "):
        read_radiograph(path)


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_compressed_file_cut_short_is_truncated(tmp_path: Path) -> None:
    ds = make_dataset(pixels=np.random.default_rng(1).integers(0, 4096, size=(64, 96)))
    ds.compress(JPEG2000Lossless)
    path = write(ds, tmp_path / "full.dcm")
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(TruncatedPixelDataError):
            read_radiograph(path)


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_real_jpeg_cut_short_is_truncated_not_a_grey_image(real: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.dcm"
    path.write_bytes((real / "siim-cr-negative.dcm").read_bytes()[:90_000])
    with pytest.raises(TruncatedPixelDataError):
        read_radiograph(path)


def test_jpeg_codestream_without_end_marker_is_truncated() -> None:
    # Decoders fill a cut JPEG with grey and say nothing; the missing FFD9 gives it away.
    ds = make_dataset(bits_stored=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8" + b"\x10" * 200])
    with pytest.raises(TruncatedPixelDataError, match="FFD9"):
        to_radiograph(ds)


def test_undecodable_codestream_names_the_syntax_and_plugin() -> None:
    ds = make_dataset()
    ds.compress(JPEG2000Lossless)
    ds.PixelData = encapsulate([b"\x00" * 64 + b"\xff\xd9"])
    with pytest.raises(ReadError, match=r"(?s)JPEG 2000.*pylibjpeg-openjpeg"):
        to_radiograph(ds)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is a text file\n" * 40, np.random.default_rng(0).bytes(5000)],
    ids=["empty", "text", "random"],
)
def test_not_dicom(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "file.dcm"
    path.write_bytes(content)
    with pytest.raises(NotDicomError):
        read_dataset(path)


def test_missing_file_is_a_read_error_not_not_dicom(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="cannot read") as info:
        read_dataset(tmp_path / "absent.dcm")
    assert not isinstance(info.value, NotDicomError)


def test_raw_data_set_without_preamble_is_read(tmp_path: Path) -> None:
    ds = make_dataset(rows=32, columns=40)
    expected = to_radiograph(ds).pixels
    del ds.file_meta
    path = tmp_path / "raw.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    _, radiograph = read_radiograph(path)
    np.testing.assert_array_equal(radiograph.pixels, expected)


@pytest.mark.parametrize("photometric", ["RGB", "PALETTE COLOR", "YBR_FULL"])
def test_colour_is_unsupported(photometric: str) -> None:
    ds = make_dataset(bits_stored=8, photometric=photometric)
    if photometric != "PALETTE COLOR":
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.PixelData = ds.PixelData * 3
    with pytest.raises(UnsupportedImageError, match=rf"colour image \({photometric}\)"):
        to_radiograph(ds)


def test_greyscale_with_three_samples_is_unsupported() -> None:
    ds = make_dataset(bits_stored=8, SamplesPerPixel=3)
    with pytest.raises(UnsupportedImageError, match="Samples per Pixel is 3"):
        to_radiograph(ds)


def test_no_pixel_data() -> None:
    with pytest.raises(NoPixelDataError):
        to_radiograph(make_dataset(PixelData=None))


def test_multi_frame_is_unsupported() -> None:
    ds = make_dataset(rows=32, columns=32, NumberOfFrames=2)
    ds.PixelData = ds.PixelData * 2
    with pytest.raises(UnsupportedImageError, match=r"multi-frame image \(2 frames\)"):
        to_radiograph(ds)


def test_zero_rows_is_empty() -> None:
    with pytest.raises(EmptyImageError, match="Rows is 0"):
        to_radiograph(make_dataset(Rows=0))


def test_missing_rows_is_a_read_error() -> None:
    with pytest.raises(ReadError, match="Rows"):
        to_radiograph(make_dataset(Rows=None))
