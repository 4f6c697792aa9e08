"""Reading volumes: formats, DICOM series split per series and echo, clear errors for bad inputs."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from bad_inputs import BAD_INPUTS, SERIES_UID, _volume, write_dicom_series, write_image

from PediatricBoneSegLib.io.volumes import (
    VolumeReadError,
    case_name,
    check_volume,
    direction_problem,
    discover_sources,
    read_volume,
)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_formats_round_trip_with_geometry(tmp_path: Path, suffix: str) -> None:
    image = _volume()
    path = write_image(image, tmp_path / f"case{suffix}")
    read = read_volume(path)
    assert read.GetPixelID() == sitk.sitkFloat32
    assert read.GetSize() == image.GetSize()
    np.testing.assert_allclose(read.GetSpacing(), image.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(read.GetOrigin(), image.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(read.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))
    assert case_name(path) == "case"
    assert [s.name for s in discover_sources(path).sources] == ["case"]


def test_bad_files_give_one_clear_error_naming_the_file(tmp_path: Path) -> None:
    for name, bad in BAD_INPUTS.items():
        if bad.kind != "file":
            continue
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        path = bad.make(folder)
        with pytest.raises(VolumeReadError) as caught:
            read_volume(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and bad.words in message, (name, message)
        assert "\n" not in message


def test_missing_input_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(VolumeReadError, match="no such file or folder"):
        discover_sources(tmp_path / "absent.nii.gz")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("nothing here")
    with pytest.raises(VolumeReadError, match="no DICOM series and no NIfTI"):
        discover_sources(tmp_path / "empty")


def test_a_4d_file_holding_one_volume_reads_as_3d(tmp_path: Path) -> None:
    path = write_image(sitk.JoinSeries([_volume()]), tmp_path / "one.nii.gz")
    assert read_volume(path).GetDimension() == 3


def test_multi_echo_series_gives_one_volume_per_echo(tmp_path: Path) -> None:
    folder = tmp_path / "knee_t2map"
    write_dicom_series(folder, echoes=3)
    sources = discover_sources(folder).sources
    assert [s.name for s in sources] == ["knee_t2map_echo1", "knee_t2map_echo2", "knee_t2map_echo3"]
    for echo, source in enumerate(sources, start=1):
        volume = read_volume(source)
        assert volume.GetSize() == (10, 8, 5)
        np.testing.assert_allclose(volume.GetSpacing(), (0.5, 0.5, 2.5), atol=1e-4)
        values = sitk.GetArrayFromImage(volume)
        # never mixed: every slice holds this echo's value, in slice order
        np.testing.assert_array_equal(values[:, 0, 0], [1000 * echo + 100 * k for k in range(5)])


def test_folder_with_two_series_and_image_files_gives_each_volume(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "batch" / "dicom", echoes=1, series_uid=SERIES_UID, series_number=3)
    write_dicom_series(tmp_path / "batch" / "dicom", echoes=1, series_uid=SERIES_UID + ".2", series_number=7)
    write_image(_volume(), tmp_path / "batch" / "a.nii.gz")
    names = sorted(s.name for s in discover_sources(tmp_path / "batch").sources)
    assert names == ["a", "dicom_series3", "dicom_series7"]


def test_slices_that_cannot_be_told_apart_are_an_error(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "mixed", echoes=2, tag_echo=False)
    # echo times still differ: they separate the volumes
    assert [s.name for s in discover_sources(tmp_path / "mixed").sources] == ["mixed_te10", "mixed_te20"]
    folder = tmp_path / "clash"
    write_dicom_series(folder, echoes=1)
    write_dicom_series(folder / "copy", echoes=1)
    for file in (folder / "copy").iterdir():  # same series, same positions, nothing to tell them apart
        file.rename(folder / f"dup_{file.name}")
    (folder / "copy").rmdir()
    discovery = discover_sources(folder)
    assert discovery.sources == []
    assert [str(problem.path) for problem in discovery.problems] == [str(folder)]
    assert "same slice position" in discovery.problems[0].problem


# --- what ITK's readers let through: short data, NaN in NIfTI, sheared grids ----------------------

SHAPE = (10, 20, 20)  # numpy (k, j, i): 4000 float32 voxels, 16000 bytes
DATA_BYTES = 16000


def _write_nifti(path: Path, array: np.ndarray | None = None) -> Path:
    """A NIfTI-1 file written by ITK; ``.nii.gz`` compressed."""
    array = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) + 1 if array is None else array
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.5, 2.0))
    sitk.WriteImage(image, str(path), path.name.endswith(".gz"))
    return path


def _cut(path: Path, keep: float | int) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    return path


def _patch_nifti(path: Path, offset: int, fmt: str, *values) -> None:
    """Rewrite header fields of an uncompressed NIfTI-1 file in place."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<" + fmt, data, offset, *values)
    path.write_bytes(bytes(data))


def _nifti2(path: Path, array: np.ndarray, srow: tuple[float, ...] = (-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 2, 0)) -> Path:
    """A single-file NIfTI-2 (540-byte header, float32 data at byte 544), written field by field."""
    k, j, i = array.shape
    header = bytearray(544)
    struct.pack_into("<i8shh8q", header, 0, 540, b"n+2\0\r\n\x1a\n", 16, 32, 3, i, j, k, 1, 1, 1, 1)
    struct.pack_into("<8d", header, 104, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0)  # pixdim
    struct.pack_into("<qd", header, 168, 544, 1.0)  # vox_offset, scl_slope
    struct.pack_into("<ii", header, 344, 0, 1)  # qform_code, sform_code
    struct.pack_into("<12d", header, 400, *srow)
    path.write_bytes(bytes(header) + array.astype("<f4").tobytes())
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_nifti_is_an_error_not_zeros(tmp_path: Path, suffix: str, keep: float) -> None:
    path = _cut(_write_nifti(tmp_path / f"knee{suffix}"), keep)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).min() == 0  # ITK fills the missing data with zeros
    with pytest.raises(VolumeReadError) as caught:
        read_volume(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: is truncated: its header says {DATA_BYTES} bytes of voxel data, the file has ")
    assert int(message.split("the file has ")[1].split()[0]) < DATA_BYTES
    assert ("gzip stream ends early" in message) == (suffix == ".nii.gz")


def test_a_tiny_nifti_is_reported_truncated_not_constant(tmp_path: Path) -> None:
    path = _cut(_write_nifti(tmp_path / "tiny.nii"), 200)
    with pytest.raises(VolumeReadError, match=f"header says {DATA_BYTES} bytes of voxel data, the file has 0$"):
        read_volume(path)
    _cut(path, 100)
    with pytest.raises(VolumeReadError, match=r"ends inside its NIfTI header \(100 of 348 bytes\)"):
        read_volume(path)
    compressed = _cut(_write_nifti(tmp_path / "tiny.nii.gz"), 60)
    with pytest.raises(VolumeReadError, match="tiny.nii.gz: is truncated: its gzip stream ends early"):
        read_volume(compressed)
    _cut(path, 0)
    with pytest.raises(VolumeReadError, match=r"tiny.nii: the file is empty \(0 bytes\)"):
        read_volume(path)
    compressed.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))  # a gzip header, then no deflate data
    with pytest.raises(VolumeReadError, match=r"not a readable gzip file \(corrupt compressed data\)"):
        read_volume(compressed)


@pytest.mark.parametrize(("suffix", "compress"), [(".nrrd", False), (".nrrd", True), (".mha", False), (".mha", True)])
def test_truncated_nrrd_and_mha_are_errors(tmp_path: Path, suffix: str, compress: bool) -> None:
    noise = np.random.default_rng(0).uniform(1, 100, SHAPE).astype(np.float32)  # data much larger than the header
    for keep in (0.95, 0.5):
        path = tmp_path / f"knee{keep}{suffix}"
        sitk.WriteImage(sitk.GetImageFromArray(noise), str(path), compress)
        with pytest.raises(VolumeReadError, match="the image data cannot be read \\(truncated or corrupt file\\)"):
            read_volume(_cut(path, keep))


def test_nifti2_header_is_parsed(tmp_path: Path) -> None:
    array = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) + 1
    path = _nifti2(tmp_path / "two.nii", array)
    try:
        read = read_volume(path)  # an ITK with NIfTI-2 support
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read), array)
    except VolumeReadError as error:
        assert error.problem == "is a NIfTI-2 file, which this ITK cannot read; save it as NIfTI-1"
    with pytest.raises(VolumeReadError, match=f"header says {DATA_BYTES} bytes of voxel data, the file has 8000$"):
        read_volume(_cut(path, 544 + 8000))
    sheared = _nifti2(tmp_path / "sheared.nii", array, srow=(-1, 0.5, 0, 0, 0, -1, 0, 0, 0, 0, 2, 0))
    with pytest.raises(VolumeReadError, match=r"sform's direction matrix is not orthogonal \(shear of 26.57 degrees\)"):
        read_volume(sheared)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nan_and_infinite_nifti_voxels_are_refused(tmp_path: Path, suffix: str) -> None:
    array = np.ones(SHAPE, np.float32)
    array[2, 3, 4], array[0, 0, 0] = np.nan, -np.inf
    path = _write_nifti(tmp_path / f"nans{suffix}", array)
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()  # ITK reads them as 0
    with pytest.raises(VolumeReadError, match="contains 2 NaN or infinite voxel value"):
        read_volume(path)


SHEAR_MESSAGE = r"not orthogonal \(shear of 20.00 degrees\); resample the volume to an orthogonal grid"


def _sheared(image: sitk.Image, degrees: float = 20.0) -> sitk.Image:
    """The second voxel axis tilted towards the first: columns (1,0,0), (sin, cos, 0), (0,0,1)."""
    sine, cosine = np.sin(np.radians(degrees)), np.cos(np.radians(degrees))
    image = sitk.Image(image)
    image.SetDirection((1.0, sine, 0.0, 0.0, cosine, 0.0, 0.0, 0.0, 1.0))
    return image


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_sheared_nrrd_and_mha_are_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"sheared{suffix}"
    sitk.WriteImage(_sheared(_volume()), str(path))
    sine = np.sin(np.radians(20.0))
    assert sitk.ReadImage(str(path)).GetDirection()[1] == pytest.approx(sine)  # ITK keeps the shear
    with pytest.raises(VolumeReadError, match=f"{path}: the direction matrix is {SHEAR_MESSAGE}"):
        read_volume(path)


@pytest.mark.parametrize("qform_code", [0, 1])
def test_a_sheared_nifti_sform_is_refused(tmp_path: Path, qform_code: int) -> None:
    path = _write_nifti(tmp_path / "sheared.nii")
    sine, cosine = np.sin(np.radians(20.0)), np.cos(np.radians(20.0))
    _patch_nifti(path, 252, "hh", qform_code, 1)  # qform_code, sform_code
    _patch_nifti(path, 280, "12f", -0.5, -0.5 * sine, 0, 0, 0, -0.5 * cosine, 0, 0, 0, 0, 2, 0)  # srow_x/y/z (RAS)
    # without a qform ITK fails with "no orthonormal definition"; with one it silently drops the sform
    with pytest.raises(VolumeReadError, match=f"{path}: the NIfTI sform's direction matrix is {SHEAR_MESSAGE}"):
        read_volume(path)


def test_check_volume_refuses_a_sheared_direction_but_not_rounding(tmp_path: Path) -> None:
    image = _volume()
    with pytest.raises(VolumeReadError, match=f"input volume: the direction matrix is {SHEAR_MESSAGE}"):
        check_volume(_sheared(image), "input volume")
    check_volume(_sheared(image, degrees=1e-4), "input volume")  # float rounding of a rotation
    assert direction_problem(np.diag([0.5, 0.5, 3.0])) is None  # axis lengths (spacing) do not matter


def test_read_volume_on_a_folder_says_so(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "series", echoes=1)
    with pytest.raises(VolumeReadError, match="series: is a folder, not a volume file") as caught:
        read_volume(tmp_path / "series")
    assert "discover_sources" in str(caught.value)


def test_case_names_are_never_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "knee_scan").mkdir()
    monkeypatch.chdir(tmp_path / "knee_scan")
    assert case_name(".") == "knee_scan"
    assert case_name("..") == tmp_path.name
    assert case_name("/") == "volume"
    assert case_name(".nii.gz") == "volume"
    assert case_name("a/knee.NII.GZ") == "knee"
