"""Reading input volumes (NIfTI, NRRD, MHA, DICOM series folders) and writing files atomically.

Every problem with an input raises ``VolumeReadError`` whose message names the file and the problem.
A DICOM folder may hold several series, or one series with several echoes (or magnitude and phase
images): each becomes its own volume, and slices that cannot be told apart are an error, never a
silently mis-stacked volume.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_SLICE_SPACING_TOLERANCE = 0.1  # relative spread of slice gaps beyond which slices are missing
# DICOM tags that split one series into separate volumes (echoes, magnitude/phase, orientations).
_VOLUME_TAGS = {
    "echo": "0018|0086",
    "echo_time": "0018|0081",
    "image_type": "0008|0008",
    "temporal": "0020|0100",
    "orientation": "0020|0037",
    "rows": "0028|0010",
    "columns": "0028|0011",
}


class VolumeReadError(ValueError):
    """An input cannot be segmented; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


@dataclass(frozen=True)
class VolumeSource:
    """One volume to segment: an image file, or one series (one echo) of a DICOM folder.

    ``name``: the case name (file name without extensions, or the DICOM folder's name with a
    series/echo suffix when the folder holds several volumes); ``dicom_files``: the series' slice
    files in slice order (empty for an image file)."""

    path: Path
    name: str
    dicom_files: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.dicom_files:
            return f"{self.path} [{self.name}, {len(self.dicom_files)} DICOM files]"
        return str(self.path)


def case_name(path: str | Path) -> str:
    """The file name without its image extension (``knee.nii.gz`` -> ``knee``)."""
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def discover_sources(path: str | Path) -> list[VolumeSource]:
    """The volumes an input stands for: a file is one; a folder holds image files and/or DICOM
    series (searched recursively), each a volume."""
    path = Path(path)
    if not path.exists():
        raise VolumeReadError(path, "no such file or folder")
    if path.is_file():
        return [VolumeSource(path, case_name(path))]
    sources: list[VolumeSource] = []
    for folder, subfolders, files in os.walk(path):
        subfolders.sort()
        folder_path = Path(folder)
        images = sorted(f for f in files if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."))
        sources.extend(VolumeSource(folder_path / f, case_name(f)) for f in images)
        if len(images) < len(files):
            sources.extend(dicom_sources(folder_path))
    if not sources:
        raise VolumeReadError(path, "the folder holds no DICOM series and no NIfTI, NRRD or MHA file")
    return sources


def dicom_sources(folder: Path) -> list[VolumeSource]:
    """One source per volume of the DICOM files directly in ``folder`` (none if there are none)."""
    series: dict[str, dict[tuple[str, ...], list[tuple[float, str]]]] = {}
    for series_id in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        for file_name in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id):
            tags = _dicom_tags(file_name)
            key = tuple(tags[name] for name in _VOLUME_TAGS)
            series.setdefault(series_id, {}).setdefault(key, []).append((_slice_position(tags, file_name), file_name))
    sources = []
    for series_id, volumes in series.items():
        base = folder.name
        if len(series) > 1:
            base += f"_series{_dicom_tags(next(iter(volumes.values()))[0][1])['series_number'] or series_id[-6:]}"
        keys = sorted(volumes, key=_volume_order)
        for index, key in enumerate(keys):
            slices = sorted(volumes[key])
            positions = np.round([position for position, _ in slices], 3)
            if len(set(positions)) < len(positions):
                raise VolumeReadError(
                    folder,
                    f"series {series_id} holds several images at the same slice position that no echo, "
                    "image-type or temporal tag tells apart; export one volume per folder",
                )
            name = base + (_volume_suffix(key, keys, index) if len(keys) > 1 else "")
            sources.append(VolumeSource(folder, name, tuple(file for _, file in slices)))
    return sources


def read_volume(source: VolumeSource | str | Path) -> sitk.Image:
    """Read and check one 3D scalar volume; returns a Float32 image with the file's geometry."""
    if not isinstance(source, VolumeSource):
        source = VolumeSource(Path(source), case_name(source))
    image = _read_dicom_series(source) if source.dicom_files else _read_file(source.path)
    check_volume(image, source.path)
    return image


def check_volume(image: sitk.Image, path: str | Path) -> None:
    """Raise ``VolumeReadError`` for what no joint MR is: not 3D scalar, NaN, empty or constant."""
    if image.GetDimension() != 3:
        raise VolumeReadError(path, f"is a {image.GetDimension()}D image; a 3D volume is needed")
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise VolumeReadError(path, f"has {components} values per voxel; a scalar volume is needed")
    if min(image.GetSize()) < 2:
        raise VolumeReadError(path, f"has a single slice (size {image.GetSize()}); a 3D volume is needed")
    array = sitk.GetArrayViewFromImage(image)
    if not np.isfinite(array).all():
        raise VolumeReadError(path, "contains NaN or infinite voxel values")
    low, high = float(array.min()), float(array.max())
    if low == high:
        what = "all voxels are zero" if high == 0 else f"all voxels have the same value ({high:g})"
        raise VolumeReadError(path, f"{what}: the volume is empty")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same extension, so writers pick the same format);
    it replaces ``path`` only when the block succeeds, and is removed otherwise."""
    path = Path(path)
    temporary = path.with_name(f".tmp-{secrets.token_hex(4)}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_image(image: sitk.Image, path: str | Path, compress: bool = True) -> Path:
    """Write an image atomically (format from the extension)."""
    with atomic_path(path) as temporary:
        sitk.WriteImage(image, str(temporary), useCompression=compress)
    return Path(path)


def _read_file(path: Path) -> sitk.Image:
    if not path.is_file():
        raise VolumeReadError(path, "no such file")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise VolumeReadError(path, "not a readable image (NIfTI, NRRD, MHA or a DICOM folder expected)") from None
    size = reader.GetSize()
    if reader.GetDimension() == 4 and size[3] > 1:
        raise VolumeReadError(path, f"is a 4D image (size {size}): split it into 3D volumes")
    if reader.GetDimension() < 3:
        raise VolumeReadError(path, f"is a {reader.GetDimension()}D image; a 3D volume is needed")
    if reader.GetNumberOfComponents() != 1:
        raise VolumeReadError(path, f"has {reader.GetNumberOfComponents()} values per voxel; a scalar volume is needed")
    try:
        image = reader.Execute()
    except RuntimeError:
        raise VolumeReadError(path, "the image data cannot be read (truncated or corrupt file)") from None
    if image.GetDimension() == 4:  # a 4D file holding one volume
        image = image[:, :, :, 0]
    return sitk.Cast(image, sitk.sitkFloat32)


def _read_dicom_series(source: VolumeSource) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(source.dicom_files))
    try:
        image = reader.Execute()
    except RuntimeError:
        raise VolumeReadError(source.path, f"DICOM series {source.name} cannot be read") from None
    if len(source.dicom_files) > 2:
        positions = np.array([_slice_position(_dicom_tags(f), f) for f in source.dicom_files])
        gaps = np.diff(positions)
        if gaps.min() <= 0 or (gaps.max() - gaps.min()) > _SLICE_SPACING_TOLERANCE * gaps.mean():
            raise VolumeReadError(source.path, f"DICOM series {source.name} has uneven slice gaps (missing slices?)")
    return sitk.Cast(image, sitk.sitkFloat32)


def _dicom_tags(file_name: str) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file_name)
    reader.LoadPrivateTagsOff()
    reader.ReadImageInformation()
    wanted = {*_VOLUME_TAGS.values(), "0020|0032", "0020|0011"}
    values = {key: reader.GetMetaData(key).strip() for key in reader.GetMetaDataKeys() if key in wanted}
    named = {name: values.get(tag, "") for name, tag in _VOLUME_TAGS.items()}
    return {**named, "position": values.get("0020|0032", ""), "series_number": values.get("0020|0011", "")}


def _slice_position(tags: dict[str, str], file_name: str) -> float:
    """Distance of a slice along its normal (mm), from ImagePositionPatient and ImageOrientationPatient."""
    try:
        orientation = np.array([float(v) for v in tags["orientation"].split("\\")]).reshape(2, 3)
        position = np.array([float(v) for v in tags["position"].split("\\")])
    except ValueError:
        raise VolumeReadError(file_name, "DICOM file without a usable image position/orientation") from None
    return float(np.cross(orientation[0], orientation[1]) @ position)


def _volume_order(key: tuple[str, ...]) -> tuple:
    echo = key[list(_VOLUME_TAGS).index("echo")]
    return (int(echo) if echo.isdigit() else 0, key)


def _volume_suffix(key: tuple[str, ...], keys: list[tuple[str, ...]], index: int) -> str:
    """Name a volume of a series by the tags that differ between its volumes."""
    names = list(_VOLUME_TAGS)
    differs = {name: len({k[i] for k in keys}) > 1 for i, name in enumerate(names)}
    tags = dict(zip(names, key))
    suffix = ""
    if differs["echo"]:
        suffix += f"_echo{tags['echo']}"
    elif differs["echo_time"]:
        suffix += f"_te{tags['echo_time']}"
    if differs["image_type"]:
        suffix += "_" + "".join(c for c in tags["image_type"].split("\\")[-1].lower() if c.isalnum())
    if differs["temporal"]:
        suffix += f"_t{tags['temporal']}"
    if any(differs[name] for name in ("orientation", "rows", "columns")):
        suffix += f"_vol{index + 1}"
    return suffix
