"""Test inputs written as real files: a small oblique volume, DICOM series (echoes, tilts), and
the catalogue of inputs that must be refused: what users and testers have fed ``pbseg`` (damaged
files, wrong kinds of image, broken DICOM series).

``BAD_INPUTS`` maps a name to a ``BadInput``: ``make(folder)`` writes the input into ``folder`` and
returns the path the error must name; ``words`` must appear in that error. ``kind`` says what the
input is: an image ``"file"`` (also a dataset image for ``pbseg validate`` when it is NIfTI), or a
``"dicom"`` series folder. Suites import it (``Testing/test_bad_inputs.py`` runs every entry
through ``pbseg segment`` alone and all together in a batch).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk


def write_image(image: sitk.Image, path: Path) -> Path:
    """Write a test input (format from the extension, compressed where the format allows)."""
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


SERIES_UID = "1.2.826.0.1.3680043.8.498.1001"


def _volume(shape: tuple[int, int, int] = (6, 10, 12)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1)
    image.SetSpacing((0.5, 0.6, 2.5))
    image.SetOrigin((10.0, -4.0, 3.0))
    image.SetDirection((0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    return image


def write_dicom_series(
    folder: Path,
    echoes: int,
    slices: int = 5,
    series_uid: str = SERIES_UID,
    series_number: int = 3,
    tag_echo=True,
    prefix: str = "IM",
    drift: float = 0.0,
) -> None:
    """An MR series written slice by slice with SimpleITK; every echo in the same folder and the
    same series, echo e with intensities + 1000 * e, slices 2.5 mm apart along z (each shifted
    ``drift`` mm along x from the previous one: a tilted stack)."""
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
                "0020|0052": "1.2.826.0.1.3680043.8.498.2",  # Frame of Reference (a DICOM SEG refers to it)
                "0020|0011": str(series_number),
                "0020|0013": str(index + 1 + echo * 100),
                "0020|0032": f"{drift * index}\\0\\{2.5 * index}",
                "0020|0037": "1\\0\\0\\0\\1\\0",
                "0018|0050": "2.5",
                "0018|0081": f"{10 * echo}",
            }
            if tag_echo:
                tags["0018|0086"] = str(echo)
            for key, value in tags.items():
                image.SetMetaData(key, value)
            writer.SetFileName(str(folder / f"{prefix}_{series_number}_{echo}_{index}.dcm"))
            writer.Execute(image)


@dataclass(frozen=True)
class BadInput:
    make: Callable[[Path], Path]
    words: str
    kind: str = "file"


def _array_file(name: str, array: np.ndarray) -> Callable[[Path], Path]:
    return lambda folder: write_image(sitk.GetImageFromArray(array), folder / name)


def _text(folder: Path) -> Path:
    path = folder / "notes.nii.gz"
    path.write_text("this is not an image\n")
    return path


def _four_d(folder: Path) -> Path:
    return write_image(sitk.JoinSeries([_volume()] * 3), folder / "fmri.nii.gz")


def _vector(folder: Path) -> Path:
    return write_image(sitk.Compose([_volume()] * 3), folder / "rgb.nrrd")


def _with_voxel(name: str, value: float) -> Callable[[Path], Path]:
    array = np.ones((6, 10, 12), np.float32)
    array[2, 3, 4] = value
    return _array_file(name, array)


def _truncated(name: str, keep: float | int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        noise = np.random.default_rng(0).uniform(1, 100, (10, 20, 20)).astype(np.float32)
        path = write_image(sitk.GetImageFromArray(noise), folder / name)
        data = path.read_bytes()
        path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
        return path

    return make


def _sheared(name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        image = _volume()
        sine, cosine = np.sin(np.radians(20.0)), np.cos(np.radians(20.0))
        image.SetDirection((1.0, sine, 0.0, 0.0, cosine, 0.0, 0.0, 0.0, 1.0))
        return write_image(image, folder / name)

    return make


def _sheared_nifti_sform(folder: Path) -> Path:
    """A NIfTI whose sform is sheared while its qform is a rotation: ITK silently takes the qform."""
    path = write_image(_volume(), folder / "sheared_sform.nii")
    data = bytearray(path.read_bytes())
    sine, cosine = np.sin(np.radians(20.0)), np.cos(np.radians(20.0))
    struct.pack_into("<hh", data, 252, 1, 1)  # qform_code, sform_code
    struct.pack_into("<12f", data, 280, -0.5, -0.5 * sine, 0, 0, 0, -0.5 * cosine, 0, 0, 0, 0, 2, 0)
    path.write_bytes(bytes(data))
    return path


def _dicom(damage: Callable[[Path], Path]) -> Callable[[Path], Path]:
    """A 6-slice DICOM series in its own folder ``folder/<damage name>``, then damaged."""

    def make(folder: Path) -> Path:
        series = folder / damage.__name__.strip("_")
        write_dicom_series(series, echoes=1, slices=6)
        return damage(series)

    return make


def _corrupt_slice(series: Path) -> Path:
    path = series / "IM_3_1_2.dcm"
    path.write_bytes(b"\0" * 200 + b"not DICOM")
    return path


def _duplicate_slices(series: Path) -> Path:
    write_dicom_series(series, echoes=1, slices=6, prefix="COPY")  # the same slices exported twice
    return series


def _no_image_position(series: Path) -> Path:
    path = series / "IM_3_1_2.dcm"
    dataset = pydicom.dcmread(path)
    del dataset.ImagePositionPatient
    dataset.save_as(path)
    return path


def _missing_slice(series: Path) -> Path:
    (series / "IM_3_1_3.dcm").unlink()
    return series


BAD_INPUTS: dict[str, BadInput] = {
    "text named .nii.gz": BadInput(_text, "not a readable image"),
    "2d": BadInput(_array_file("flat.nii.gz", np.ones((10, 12), np.float32)), "2D image"),
    "4d": BadInput(_four_d, "4D image"),
    "all zero": BadInput(_array_file("zeros.nrrd", np.zeros((6, 10, 12), np.float32)), "all voxels are zero"),
    "constant": BadInput(_array_file("constant.nii.gz", np.full((6, 10, 12), 7, np.float32)), "same value (7)"),
    "single slice": BadInput(_array_file("single.nii.gz", np.ones((1, 10, 12), np.float32)), "single slice"),
    "vector": BadInput(_vector, "3 values per voxel"),
    "nan mha": BadInput(_with_voxel("nans.mha", np.nan), "NaN"),
    "nan nifti": BadInput(_with_voxel("nans.nii.gz", np.nan), "1 NaN or infinite voxel"),
    "inf nifti": BadInput(_with_voxel("infs.nii", np.inf), "1 NaN or infinite voxel"),
    "nii.gz cut at 50%": BadInput(_truncated("half.nii.gz", 0.5), "is truncated"),
    "nii.gz cut at 95%": BadInput(_truncated("most.nii.gz", 0.95), "is truncated"),
    "nii cut at 50%": BadInput(_truncated("half.nii", 0.5), "is truncated: its header says 16000 bytes"),
    "200-byte nii": BadInput(_truncated("tiny.nii", 200), "header says 16000 bytes of voxel data, the file has 0"),
    "100-byte nii": BadInput(_truncated("header.nii", 100), "ends inside its NIfTI header (100 of 348 bytes)"),
    "nrrd cut at 50%": BadInput(_truncated("half.nrrd", 0.5), "truncated or corrupt"),
    "sheared nrrd": BadInput(_sheared("sheared.nrrd"), "not orthogonal (shear of 20.00 degrees)"),
    "sheared nifti sform": BadInput(_sheared_nifti_sform, "sform's direction matrix is not orthogonal"),
    "corrupt dcm": BadInput(_dicom(_corrupt_slice), "not a readable DICOM file", "dicom"),
    "duplicate dcm slices": BadInput(_dicom(_duplicate_slices), "same slice position", "dicom"),
    "dcm without position": BadInput(_dicom(_no_image_position), "without a usable image position", "dicom"),
    "dcm missing a slice": BadInput(_dicom(_missing_slice), "uneven slice gaps", "dicom"),
}
