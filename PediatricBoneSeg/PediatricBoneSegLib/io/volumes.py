"""Reading input volumes (NIfTI, NRRD, MHA, DICOM series folders).

Every problem with an input raises ``VolumeReadError`` whose message names the file and the problem.
A DICOM folder may hold several series, or one series with several echoes (or magnitude and phase
images): each becomes its own volume, and slices that cannot be told apart are an error, never a
silently mis-stacked volume.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import zlib
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..image_checks import VolumeReadError, check_volume, direction_problem, non_finite_problem
from .case_folder import REPORT_FILE

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_SLICE_SPACING_TOLERANCE = 0.1  # relative spread of slice gaps beyond which slices are missing
# DICOM positions are decimal strings, often rounded to 0.01 mm: a looser limit for a stack's tilt.
_TILT_TOLERANCE_DEGREES, _TILT_TOLERANCE_MM = 0.1, 0.05
_UNREADABLE_DICOM = "not a readable DICOM file (corrupt or truncated)"
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
    """The file name without its image extension (``knee.nii.gz`` -> ``knee``); for ``.`` or ``..``
    the name of the folder they stand for. Never empty (``volume`` when nothing else is left)."""
    path = Path(path)
    name = path.name if path.name not in ("", ".", "..") else path.resolve().name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name or "volume"


@dataclass
class Discovery:
    """What a path holds: the volumes to segment, and one error per file, series or folder that
    cannot be (each naming it and the problem); a bad series never hides the good ones."""

    sources: list[VolumeSource] = field(default_factory=list)
    problems: list[VolumeReadError] = field(default_factory=list)

    def extend(self, other: Discovery) -> None:
        self.sources.extend(other.sources)
        self.problems.extend(other.problems)


def discover_sources(path: str | Path, exclude: Iterable[str | Path] = ()) -> Discovery:
    """The volumes an input stands for: a file is one; a folder holds image files and/or DICOM
    series (searched recursively), each a volume. Skipped subfolders: hidden ones (a concurrent
    run's staging folders), pbseg case folders (they hold ``report.json``) and those in ``exclude``
    (the output folder). Raises ``VolumeReadError`` only when ``path`` itself is unusable."""
    path = Path(path)
    if not path.exists():
        raise VolumeReadError(path, "no such file or folder")
    if path.is_file():
        return Discovery([VolumeSource(path, case_name(path))])
    if (path / REPORT_FILE).is_file():
        raise VolumeReadError(path, f"is a pbseg output folder (it holds {REPORT_FILE}), not an input")
    excluded = {Path(folder).resolve() for folder in exclude}
    found = Discovery()

    def unreadable(error: OSError) -> None:
        found.problems.append(VolumeReadError(error.filename, f"cannot be read ({error.strerror})"))

    for folder, subfolders, files in os.walk(path, onerror=unreadable):
        folder_path = Path(folder)
        subfolders[:] = sorted(
            name
            for name in subfolders
            if not name.startswith(".")
            and not (folder_path / name / REPORT_FILE).is_file()
            and (folder_path / name).resolve() not in excluded
        )
        visible = sorted(f for f in files if not f.startswith("."))
        images = [f for f in visible if f.lower().endswith(IMAGE_SUFFIXES)]
        found.sources.extend(VolumeSource(folder_path / f, case_name(f)) for f in images)
        if len(images) < len(visible):
            found.extend(dicom_sources(folder_path))
    if not found.sources and not found.problems:
        raise VolumeReadError(path, "the folder holds no DICOM series and no NIfTI, NRRD or MHA file")
    found.sources = _unique_names(found.sources, path)
    return found


def dicom_sources(folder: Path) -> Discovery:
    """One source per volume of the DICOM files directly in ``folder`` (none if there are none);
    a series that cannot be stacked, and a DICOM file that cannot be read, is a problem instead."""
    found = Discovery()
    listed: set[str] = set()
    series: dict[str, dict[tuple[str, ...], list[tuple[np.ndarray, str]]]] = {}
    numbers: dict[str, str] = {}
    for series_id in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id)
        listed.update(Path(f).name for f in files)
        try:
            volumes: dict[tuple[str, ...], list[tuple[np.ndarray, str]]] = {}
            for file_name in files:
                tags = _dicom_tags(file_name)
                key = tuple(tags[name] for name in _VOLUME_TAGS)
                volumes.setdefault(key, []).append((_slice_position(tags, file_name), file_name))
                numbers.setdefault(series_id, tags["series_number"])
        except VolumeReadError as error:
            found.problems.append(error)
            continue
        series[series_id] = volumes
    found.problems.extend(_unreadable_dicom_files(folder, listed))
    for series_id, base in _series_names(folder, series, numbers).items():
        volumes = series[series_id]
        keys = sorted(volumes, key=_volume_order)
        for index, key in enumerate(keys):
            name = base + (_volume_suffix(key, keys, index) if len(keys) > 1 else "")
            slices = sorted(volumes[key], key=lambda item: item[0][0])
            problem = _stack_problem(np.array([position for position, _ in slices]))
            if problem:
                found.problems.append(VolumeReadError(folder, f"DICOM series {name} ({series_id}) {problem}"))
            else:
                found.sources.append(VolumeSource(folder, name, tuple(file for _, file in slices)))
    return found


def read_volume(source: VolumeSource | str | Path) -> sitk.Image:
    """Read and check one 3D scalar volume; returns a Float32 image with the file's geometry."""
    if not isinstance(source, VolumeSource):
        source = VolumeSource(Path(source), case_name(source))
    image = _read_dicom_series(source) if source.dicom_files else read_image_file(source.path)
    image = sitk.Cast(image, sitk.sitkFloat32)
    check_volume(image, source.path)
    return image


def read_image_file(path: str | Path) -> sitk.Image:
    """Read a 3D scalar image file (pixel type as stored) after the checks of the file itself:
    ``check_file_data``, 2D/4D and vector images. ``read_volume`` adds the checks of the content;
    label maps (``pbseg validate``) are read with this alone."""
    path = Path(path)
    if path.is_dir():
        raise VolumeReadError(
            path, "is a folder, not a volume file (give DICOM folders to pbseg segment; discover_sources lists them)"
        )
    if not path.is_file():
        raise VolumeReadError(path, "no such file")
    check_file_data(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        if _nifti_version(path) == 2:
            raise VolumeReadError(path, "is a NIfTI-2 file, which this ITK cannot read; save it as NIfTI-1") from None
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
    return image


def check_file_data(path: str | Path) -> None:
    """Raise ``VolumeReadError`` for what ITK's NIfTI reader lets through: data shorter than the
    header says (ITK fills the rest with zeros), a sheared sform (ITK falls back to the qform or
    fails with an unclear message) and NaN/infinite voxels (ITK reads them as zeros). NRRD and
    MetaImage readers fail on short data themselves; other files pass unchecked."""
    path = Path(path)
    if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
        problem = _nifti_problem(path)
        if problem:
            raise VolumeReadError(path, problem)


def _read_dicom_series(source: VolumeSource) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(source.dicom_files))
    try:
        image = reader.Execute()
    except RuntimeError:
        raise VolumeReadError(source.path, f"DICOM series {source.name} cannot be read") from None
    return image


def _dicom_tags(file_name: str) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file_name)
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise VolumeReadError(file_name, _UNREADABLE_DICOM) from None
    wanted = {*_VOLUME_TAGS.values(), "0020|0032", "0020|0011"}
    values = {key: reader.GetMetaData(key).strip() for key in reader.GetMetaDataKeys() if key in wanted}
    named = {name: values.get(tag, "") for name, tag in _VOLUME_TAGS.items()}
    return {**named, "position": values.get("0020|0032", ""), "series_number": values.get("0020|0011", "")}


def _slice_position(tags: dict[str, str], file_name: str) -> np.ndarray:
    """A slice's ImagePositionPatient in its own frame (mm): along the slice normal, then along
    the rows and columns (non-zero changes of those mean a tilted stack)."""
    try:
        orientation = np.array([float(v) for v in tags["orientation"].split("\\")]).reshape(2, 3)
        position = np.array([float(v) for v in tags["position"].split("\\")]).reshape(3)
    except ValueError:
        raise VolumeReadError(file_name, "DICOM file without a usable image position/orientation") from None
    return np.array(
        [np.cross(orientation[0], orientation[1]) @ position, orientation[0] @ position, orientation[1] @ position]
    )


def _stack_problem(positions: np.ndarray) -> str | None:
    """Why slices (their ``_slice_position``, sorted along the normal) do not stack into a volume."""
    along = np.round(positions[:, 0], 3)
    if len(set(along)) < len(along):
        return (
            "holds several images at the same slice position that no echo, image-type or temporal tag "
            "tells apart; export one volume per folder"
        )
    if len(along) < 2:
        return None
    gaps = np.diff(along)
    if len(gaps) > 1 and gaps.max() - gaps.min() > _SLICE_SPACING_TOLERANCE * gaps.mean():
        return "has uneven slice gaps (missing slices?)"
    drift = float(np.linalg.norm(positions[-1, 1:] - positions[0, 1:]))
    tilt = float(np.degrees(np.arctan2(drift, along[-1] - along[0])))
    if tilt > _TILT_TOLERANCE_DEGREES and drift > _TILT_TOLERANCE_MM:
        return (
            f"is a tilted stack (slices shifted in-plane: shear of {tilt:.2f} degrees, e.g. gantry tilt); "
            "resample the volume to an orthogonal grid"
        )
    return None


def _series_names(
    folder: Path, series: dict[str, dict[tuple[str, ...], list]], numbers: dict[str, str]
) -> dict[str, str]:
    """Case-name base of each series: the folder's name, with the SeriesNumber when the folder holds
    several series, and a short hash of the series UID when that is still ambiguous (two series
    with the same number), so that every series can be segmented and names stay the same across runs."""
    folder_name = case_name(folder)
    if len(series) == 1:
        return {series_id: folder_name for series_id in series}
    bases = {series_id: f"{folder_name}_series{numbers.get(series_id) or series_id[-6:]}" for series_id in series}
    counts = Counter(bases.values())
    return {
        series_id: base + (f"_{_short_hash(series_id)}" if counts[base] > 1 else "")
        for series_id, base in sorted(bases.items())
    }


def _unreadable_dicom_files(folder: Path, listed: set[str]) -> list[VolumeReadError]:
    """DICOM-looking files (``.dcm``/``.ima`` or the DICM preamble) that no series took because they
    cannot be read; without this they would only show up as a series' missing slice."""
    problems = []
    for file in sorted(folder.iterdir()):
        if file.name in listed or file.name.startswith(".") or not file.is_file() or file.name.upper() == "DICOMDIR":
            continue
        if file.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        if not file.name.lower().endswith((".dcm", ".ima", ".dicom")):
            with open(file, "rb") as stream:
                if stream.read(132)[128:] != b"DICM":
                    continue
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(file))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            problems.append(VolumeReadError(file, _UNREADABLE_DICOM))
    return problems


def _unique_names(sources: list[VolumeSource], root: Path) -> list[VolumeSource]:
    """Sources with names that another source of the same search has (``a/knee.nii.gz`` and
    ``b/knee.nii.gz``) get a short hash of their path below ``root``: deterministic, and the second
    can be segmented too."""
    counts = Counter(source.name for source in sources)
    renamed = []
    for source in sources:
        if counts[source.name] > 1:
            where = source.path.relative_to(root) if source.path.is_relative_to(root) else source.path
            identity = f"{where.as_posix()}|{source.name}"
            source = replace(source, name=f"{source.name}_{_short_hash(identity)}")
        renamed.append(source)
    return renamed


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:6]


# Header fields of single-file NIfTI-1 and NIfTI-2, by header size (the first field): offsets and
# struct formats; the magic is 4 bytes at its offset.
_NIFTI_LAYOUTS = {
    348: {"dim": (40, "8h"), "datatype": (70, "h"), "bitpix": (72, "h"), "vox_offset": (108, "f"),
          "sform_code": (254, "h"), "srow": (280, "12f"), "magic": (344, b"n+1\0")},
    540: {"dim": (16, "8q"), "datatype": (12, "h"), "bitpix": (14, "h"), "vox_offset": (168, "q"),
          "sform_code": (348, "i"), "srow": (400, "12d"), "magic": (4, b"n+2\0")},
}  # fmt: skip
_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # datatype codes of float32 / float64
_CHUNK = 1 << 24


def _nifti_problem(path: Path) -> str | None:
    """The first defect of a single-file NIfTI-1/NIfTI-2 (``.nii`` or gzip-compressed), or None;
    files that are no NIfTI at all are left to ITK."""
    chunks = _file_bytes(path)
    try:
        return _nifti_stream_problem(chunks)
    finally:
        chunks.close()


def _nifti_stream_problem(chunks: Iterator[bytes]) -> str | None:
    head = b""
    stream_ended_early = False
    try:
        while len(head) < 540:
            chunk = next(chunks, b"")
            if not chunk:
                break
            head += chunk
    except EOFError:
        stream_ended_early = True
    except zlib.error:
        return "not a readable gzip file (corrupt compressed data)"
    order = next((o for o in "<>" if len(head) >= 4 and struct.unpack(o + "i", head[:4])[0] in _NIFTI_LAYOUTS), None)
    if not head and not stream_ended_early:
        return "the file is empty (0 bytes)"
    if order is None:
        if stream_ended_early:
            return f"is truncated: its gzip stream ends early, after {len(head)} bytes (no complete NIfTI header)"
        return None
    header_size = struct.unpack(order + "i", head[:4])[0]
    layout = _NIFTI_LAYOUTS[header_size]
    if len(head) < layout["vox_offset"][0] + struct.calcsize(order + layout["vox_offset"][1]):
        return f"is truncated: the file ends inside its NIfTI header ({len(head)} of {header_size} bytes)"

    def field_value(name: str) -> tuple:
        offset, fmt = layout[name]
        return struct.unpack_from(order + fmt, head, offset)

    rank = field_value("dim")[0]
    if not 1 <= rank <= 7:
        return None
    voxels = math.prod(max(int(n), 1) for n in field_value("dim")[1 : rank + 1])
    expected = voxels * field_value("bitpix")[0] // 8
    offset = max(int(field_value("vox_offset")[0]), header_size)
    if len(head) >= header_size:
        if head[layout["magic"][0] : layout["magic"][0] + 4] != layout["magic"][1]:
            return None  # an ANALYZE file or a .hdr/.img pair: the data is not in this file
        if field_value("sform_code")[0] > 0:
            problem = direction_problem(
                np.reshape(field_value("srow"), (3, 4))[:, :3], "the NIfTI sform's direction matrix"
            )
            if problem:
                return problem
    dtype = _NIFTI_FLOATS.get(field_value("datatype")[0])
    scan = np.dtype(order + dtype) if dtype else None
    found = 0  # voxel bytes present
    non_finite = 0
    pending = head[offset:] if len(head) > offset else b""
    skip = max(offset - len(head), 0)
    try:
        while True:
            if pending:
                usable = pending[: expected - found]
                if scan is not None:
                    whole = len(usable) - len(usable) % scan.itemsize
                    non_finite += int(np.count_nonzero(~np.isfinite(np.frombuffer(usable[:whole], scan))))
                    pending = usable[whole:]
                    found += whole
                else:
                    found += len(usable)
                    pending = b""
            if found >= expected:
                break
            chunk = next(chunks, b"")
            if not chunk:
                found += len(pending)
                break
            if skip:
                chunk, skip = chunk[skip:], max(skip - len(chunk), 0)
            pending += chunk
    except EOFError:
        stream_ended_early = True
        found += len(pending)
    except zlib.error:
        return "not a readable gzip file (corrupt compressed data)"
    if found < expected:
        problem = f"is truncated: its header says {expected} bytes of voxel data, the file has {found}"
        return problem + (" (the gzip stream ends early)" if stream_ended_early else "")
    if non_finite:
        return non_finite_problem(non_finite) + " (ITK would read them as zeros)"
    return None


def _nifti_version(path: Path) -> int | None:
    """1 or 2 for a NIfTI header, None otherwise."""
    try:
        head = next(_file_bytes(path), b"")[:4]
    except (EOFError, zlib.error):
        return None
    sizes = {struct.unpack(order + "i", head)[0] for order in "<>"} if len(head) == 4 else set()
    return 1 if 348 in sizes else 2 if 540 in sizes else None


def _file_bytes(path: Path) -> Generator[bytes, None, None]:
    """The file's bytes in chunks, decompressed when it is gzip (whatever its name says); raises
    EOFError after the last chunk when a gzip stream stops before its end (a truncated download)."""
    with open(path, "rb") as stream:
        pending = stream.read(_CHUNK)
        if not pending.startswith(b"\x1f\x8b"):
            while pending:
                yield pending
                pending = stream.read(_CHUNK)
            return
        inflate = zlib.decompressobj(wbits=31)
        while True:
            if not pending:
                pending = stream.read(_CHUNK)
                if not pending:
                    break
            data = inflate.decompress(pending, _CHUNK)  # bounded output: a compressed file may expand 1000x
            pending = inflate.unconsumed_tail
            if data:
                yield data
            if inflate.eof:
                if not inflate.unused_data.startswith(b"\x1f\x8b"):
                    return  # end of the stream (trailing padding ignored, as gzip readers do)
                pending = inflate.unused_data
                inflate = zlib.decompressobj(wbits=31)
        rest = inflate.flush()
        if rest:
            yield rest
        if not inflate.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")


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
