"""Reading volumes: formats, DICOM series split per series and echo, clear errors for bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PediatricBoneSegLib.volume_io import (
    VolumeReadError,
    atomic_path,
    case_name,
    discover_sources,
    read_volume,
    write_image,
)

SERIES_UID = "1.2.826.0.1.3680043.8.498.1001"


def _volume(shape: tuple[int, int, int] = (6, 10, 12)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1)
    image.SetSpacing((0.5, 0.6, 2.5))
    image.SetOrigin((10.0, -4.0, 3.0))
    image.SetDirection((0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    return image


def write_dicom_series(
    folder: Path, echoes: int, slices: int = 5, series_uid: str = SERIES_UID, series_number: int = 3, tag_echo=True
) -> None:
    """An MR series written slice by slice with SimpleITK; every echo in the same folder and the
    same series, echo e with intensities + 1000 * e, slices 2.5 mm apart along z."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for echo in range(1, echoes + 1):
        for index in range(slices):
            pixels = np.full((8, 10), 100 * index + 1000 * echo, dtype=np.int16)
            image = sitk.GetImageFromArray(pixels)
            image.SetSpacing((0.5, 0.5))  # the writer takes the pixel spacing from the image
            tags = {
                "0008|0060": "MR",
                "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
                "0008|0018": f"{series_uid}.{echo}.{index + 1}",
                "0020|000d": "1.2.826.0.1.3680043.8.498.1",
                "0020|000e": series_uid,
                "0020|0011": str(series_number),
                "0020|0013": str(index + 1 + echo * 100),
                "0020|0032": f"0\\0\\{2.5 * index}",
                "0020|0037": "1\\0\\0\\0\\1\\0",
                "0018|0050": "2.5",
                "0018|0081": f"{10 * echo}",
            }
            if tag_echo:
                tags["0018|0086"] = str(echo)
            for key, value in tags.items():
                image.SetMetaData(key, value)
            writer.SetFileName(str(folder / f"IM_{series_number}_{echo}_{index}.dcm"))
            writer.Execute(image)


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
    assert [s.name for s in discover_sources(path)] == ["case"]


def _bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected words in the error)."""
    text = folder / "notes.nii.gz"
    text.write_text("this is not an image\n")
    flat = write_image(sitk.GetImageFromArray(np.ones((10, 12), np.float32)), folder / "flat.nii.gz")
    series = sitk.JoinSeries([_volume()] * 3)  # 4D: three time points
    four_d = write_image(series, folder / "fmri.nii.gz")
    zeros = write_image(sitk.GetImageFromArray(np.zeros((6, 10, 12), np.float32)), folder / "zeros.nrrd")
    nan_array = np.ones((6, 10, 12), np.float32)
    nan_array[2, 3, 4] = np.nan
    nans = write_image(sitk.GetImageFromArray(nan_array), folder / "nans.mha")
    rgb = write_image(sitk.Compose([_volume()] * 3), folder / "rgb.nrrd")
    single = write_image(sitk.GetImageFromArray(np.ones((1, 10, 12), np.float32)), folder / "single.nii.gz")
    return {
        "text": (text, "not a readable image"),
        "2d": (flat, "2D image"),
        "4d": (four_d, "4D image"),
        "zeros": (zeros, "all voxels are zero"),
        "nan": (nans, "NaN"),
        "vector": (rgb, "3 values per voxel"),
        "single slice": (single, "single slice"),
    }


def test_bad_inputs_give_one_clear_error_naming_the_file(tmp_path: Path) -> None:
    for name, (path, words) in _bad_inputs(tmp_path).items():
        with pytest.raises(VolumeReadError) as caught:
            read_volume(path)
        message = str(caught.value)
        assert str(path) in message and words in message, (name, message)
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
    sources = discover_sources(folder)
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
    names = sorted(s.name for s in discover_sources(tmp_path / "batch"))
    assert names == ["a", "dicom_series3", "dicom_series7"]


def test_slices_that_cannot_be_told_apart_are_an_error(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "mixed", echoes=2, tag_echo=False)
    # echo times still differ: they separate the volumes
    assert [s.name for s in discover_sources(tmp_path / "mixed")] == ["mixed_te10", "mixed_te20"]
    folder = tmp_path / "clash"
    write_dicom_series(folder, echoes=1)
    write_dicom_series(folder / "copy", echoes=1)
    for file in (folder / "copy").iterdir():  # same series, same positions, nothing to tell them apart
        file.rename(folder / f"dup_{file.name}")
    with pytest.raises(VolumeReadError, match="same slice position"):
        discover_sources(folder)


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_bytes(b"partial")
        raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"complete")
    assert target.read_bytes() == b"complete" and list(tmp_path.iterdir()) == [target]
