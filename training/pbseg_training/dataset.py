"""Raw-layout datasets (nnU-Net / Medical Segmentation Decathlon): read, write, validate.

Layout: ``imagesTr/<case>_0000<ending>`` (one MR channel), ``labelsTr/<case><ending>``,
optionally ``tissuesTr/<case><ending>`` (a full tissue label map, for label-to-image synthesis) and
``parametersTr/<case>.json`` (how a synthetic case was made), and ``dataset.json`` with
``channel_names``, ``labels`` (``{"background": 0, bone: label}``, the catalog's labels of
``joint``), ``numTraining`` and ``file_ending`` (``.nii.gz`` or ``.nrrd``).
Phantoms and users' real data go through the same code.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from PediatricBoneSegLib.atomic import place_folder, staging_folder
from PediatricBoneSegLib.catalog import JOINTS, get_joint
from PediatricBoneSegLib.io.volumes import VolumeReadError, read_image_file, read_volume

DATASET_JSON = "dataset.json"
IMAGES, LABELS, TISSUES, PARAMETERS = "imagesTr", "labelsTr", "tissuesTr", "parametersTr"
CHANNEL_SUFFIX = "_0000"
FILE_ENDINGS = {"nii.gz": ".nii.gz", "nrrd": ".nrrd"}


class DatasetError(ValueError):
    """A dataset that cannot be read at all (no or unreadable ``dataset.json``)."""


@dataclass(frozen=True)
class Case:
    """Paths of one case; ``tissue_path`` and ``parameters_path`` are None where absent."""

    case_id: str
    image_path: Path
    label_path: Path
    tissue_path: Path | None = None
    parameters_path: Path | None = None

    def parameters(self) -> dict:
        """What ``parametersTr`` records of the case ({} when nothing)."""
        if self.parameters_path is None:
            return {}
        return json.loads(self.parameters_path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class DatasetProblem:
    """One defect of a dataset: the file concerned and what is wrong with it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _read_metadata(root: Path) -> dict:
    path = root / DATASET_JSON
    if not path.is_file():
        raise DatasetError(f"{path}: missing (a raw-layout dataset needs {DATASET_JSON})")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return metadata


def _joint_of(metadata: dict) -> str | None:
    """The dataset's joint: its ``joint`` entry, else the catalog joint whose labels it has."""
    if "joint" in metadata:
        return str(metadata["joint"]).lower()
    for key, joint in JOINTS.items():
        if metadata.get("labels") == joint.labels:
            return key
    return None


class RawDataset:
    """A raw-layout dataset folder. ``cases``: every case id found in ``imagesTr`` or ``labelsTr``
    (sorted), with the paths its image and label have or should have; ``validate_dataset`` says
    whether they exist and agree."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.metadata = _read_metadata(self.root)
        self.file_ending = str(self.metadata.get("file_ending", ".nii.gz"))
        joint = _joint_of(self.metadata)
        if joint is None:
            raise DatasetError(
                f"{self.root / DATASET_JSON}: no 'joint' entry and its labels match no joint of the catalog"
            )
        self.joint = get_joint(joint).key

    @property
    def labels(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.metadata.get("labels", {}).items()}

    def _ids(self, folder: str, suffix: str) -> set[str]:
        directory = self.root / folder
        if not directory.is_dir():
            return set()
        ending = suffix + self.file_ending
        return {p.name[: -len(ending)] for p in directory.iterdir() if p.name.endswith(ending)}

    @property
    def cases(self) -> list[Case]:
        ids = self._ids(IMAGES, CHANNEL_SUFFIX) | self._ids(LABELS, "")
        return [self.case(case_id) for case_id in sorted(ids)]

    def case(self, case_id: str) -> Case:
        tissues = self.root / TISSUES / f"{case_id}{self.file_ending}"
        parameters = self.root / PARAMETERS / f"{case_id}.json"
        return Case(
            case_id,
            self.root / IMAGES / f"{case_id}{CHANNEL_SUFFIX}{self.file_ending}",
            self.root / LABELS / f"{case_id}{self.file_ending}",
            tissues if tissues.is_file() else None,
            parameters if parameters.is_file() else None,
        )


def dataset_json(joint: str, num_training: int, file_ending: str, extra: dict | None = None) -> dict:
    """The ``dataset.json`` content of a single-channel MR dataset of ``joint``."""
    joint_model = get_joint(joint)
    return {
        "name": f"PediatricBoneSeg_{joint_model.key}",
        "channel_names": {"0": "MR"},
        "labels": joint_model.labels,
        "numTraining": int(num_training),
        "file_ending": file_ending,
        "joint": joint_model.key,
        **(extra or {}),
    }


def write_raw_dataset(
    out_dir: str | Path,
    joint: str,
    cases: Iterable[tuple],
    num_training: int,
    file_format: str = "nii.gz",
    extra: dict | None = None,
) -> Path:
    """Write (case id, image, labels[, tissues, parameters]) tuples as a raw-layout dataset in
    ``out_dir``, which must not exist or be empty (``tissues``: an optional tissue label map of the
    image's geometry; ``parameters``: an optional JSON-ready dict; either may be None).
    Built in a temporary sibling folder and renamed at the end, so an error or an interruption
    leaves nothing behind. ``extra`` entries go into ``dataset.json``."""
    if file_format not in FILE_ENDINGS:
        raise ValueError(f"unknown file format {file_format!r}; choose one of {', '.join(FILE_ENDINGS)}")
    ending = FILE_ENDINGS[file_format]
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir}: exists and is not an empty folder")
    temporary = staging_folder(out_dir)
    try:
        (temporary / IMAGES).mkdir()
        (temporary / LABELS).mkdir()
        written = 0
        for case_id, image, labels, *optional in cases:
            tissues, parameters = (*optional, None, None)[:2]
            sitk.WriteImage(image, str(temporary / IMAGES / f"{case_id}{CHANNEL_SUFFIX}{ending}"), True)
            sitk.WriteImage(labels, str(temporary / LABELS / f"{case_id}{ending}"), True)
            if tissues is not None:
                (temporary / TISSUES).mkdir(exist_ok=True)
                sitk.WriteImage(tissues, str(temporary / TISSUES / f"{case_id}{ending}"), True)
            if parameters is not None:
                (temporary / PARAMETERS).mkdir(exist_ok=True)
                text = json.dumps(parameters, indent=1) + "\n"
                (temporary / PARAMETERS / f"{case_id}.json").write_text(text, encoding="utf-8")
            written += 1
        if written != num_training:
            raise ValueError(f"expected {num_training} cases, got {written}")
        metadata = dataset_json(joint, written, ending, extra)
        (temporary / DATASET_JSON).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()
        place_folder(temporary, out_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return out_dir


def _close(a: Iterable[float], b: Iterable[float], tolerance: float) -> bool:
    return all(math.isclose(x, y, rel_tol=tolerance, abs_tol=tolerance) for x, y in zip(a, b))


def _geometry_problems(image: sitk.Image, labels: sitk.Image) -> list[str]:
    found = []
    if image.GetSize() != labels.GetSize():
        found.append(f"size {labels.GetSize()} differs from the image's {image.GetSize()}")
    if not _close(image.GetSpacing(), labels.GetSpacing(), 1e-4):
        found.append(f"spacing {labels.GetSpacing()} differs from the image's {image.GetSpacing()}")
    if not _close(image.GetOrigin(), labels.GetOrigin(), 1e-3):
        found.append(f"origin {labels.GetOrigin()} differs from the image's {image.GetOrigin()}")
    if not _close(image.GetDirection(), labels.GetDirection(), 1e-4):
        found.append(f"direction {labels.GetDirection()} differs from the image's {image.GetDirection()}")
    return found


def _read(read: Callable[[Path], sitk.Image], path: Path, problems: list[DatasetProblem]) -> sitk.Image | None:
    """``read(path)``, or None with the reader's one-line problem added to ``problems``."""
    try:
        return read(path)
    except VolumeReadError as error:
        problems.append(DatasetProblem(str(path), error.problem))
        return None


def validate_dataset(root: str | Path) -> list[DatasetProblem]:
    """Every problem of the dataset at ``root`` at once (an empty list means usable for training):
    unreadable or inconsistent ``dataset.json``, labels that are not the catalog's for the joint,
    images without labels and vice versa, 2D/4D or multi-component images, image/label geometry
    mismatches, and every image or label that ``pbseg segment`` would refuse (truncated, NaN or
    infinite voxels, sheared, empty or constant image), label values absent from ``dataset.json``,
    empty labels."""
    root = Path(root)
    try:
        dataset = RawDataset(root)
    except DatasetError as error:
        path, _, message = str(error).partition(": ")
        return [DatasetProblem(path, message)]
    except ValueError as error:  # unknown joint name
        return [DatasetProblem(str(root / DATASET_JSON), str(error))]
    problems: list[DatasetProblem] = []
    meta_path = str(root / DATASET_JSON)
    metadata = dataset.metadata
    expected = get_joint(dataset.joint).labels
    if dataset.labels != expected:
        problems.append(
            DatasetProblem(
                meta_path, f"labels {dataset.labels} do not match the catalog's {dataset.joint} labels {expected}"
            )
        )
    channels = metadata.get("channel_names", metadata.get("modality"))
    if not isinstance(channels, dict) or len(channels) != 1:
        problems.append(DatasetProblem(meta_path, f"'channel_names' must name exactly one channel, got {channels!r}"))
    if dataset.file_ending not in FILE_ENDINGS.values():
        problems.append(
            DatasetProblem(
                meta_path, f"file_ending {dataset.file_ending!r} is not one of {list(FILE_ENDINGS.values())}"
            )
        )
    for folder in (IMAGES, LABELS):
        if not (root / folder).is_dir():
            problems.append(DatasetProblem(str(root / folder), "folder missing"))
        else:
            for path in sorted((root / folder).iterdir()):
                ok_suffix = (CHANNEL_SUFFIX if folder == IMAGES else "") + dataset.file_ending
                if not path.name.startswith(".") and not path.name.endswith(ok_suffix):
                    problems.append(
                        DatasetProblem(str(path), f"unexpected file: {folder} files must end in {ok_suffix}")
                    )
    cases = dataset.cases
    if "numTraining" in metadata and metadata["numTraining"] != len(cases):
        problems.append(
            DatasetProblem(meta_path, f"numTraining is {metadata['numTraining']} but {len(cases)} cases were found")
        )
    if not cases:
        problems.append(DatasetProblem(str(root), "no cases"))
    allowed = set(dataset.labels.values())
    for case in cases:
        problems.extend(_case_problems(case, allowed))
    return problems


def _case_problems(case: Case, allowed: set[int]) -> list[DatasetProblem]:
    problems: list[DatasetProblem] = []
    if not case.image_path.is_file():
        problems.append(DatasetProblem(str(case.label_path), f"no image {case.image_path.name} for this label"))
    if not case.label_path.is_file():
        problems.append(DatasetProblem(str(case.image_path), f"no label {case.label_path.name} for this image"))
    if problems:
        return problems
    # the images as segment reads them; the labels with the same file checks (truncation, NaN)
    image = _read(read_volume, case.image_path, problems)
    labels = _read(read_image_file, case.label_path, problems)
    if image is not None and labels is not None:
        for message in _geometry_problems(image, labels):
            problems.append(DatasetProblem(str(case.label_path), f"geometry mismatch: {message}"))
    if labels is not None:
        values = sitk.GetArrayViewFromImage(labels)
        present = np.unique(values)
        if values.dtype.kind == "f" and not np.all(np.isfinite(present) & (present == np.round(present))):
            problems.append(DatasetProblem(str(case.label_path), "label values are not integers"))
        unknown = sorted({float(v) for v in present if np.isfinite(v)} - {float(a) for a in allowed})
        if unknown:
            listed = ", ".join(f"{v:g}" for v in unknown)
            problems.append(DatasetProblem(str(case.label_path), f"label values {listed} are not in dataset.json"))
        if not np.any(values != 0):
            problems.append(DatasetProblem(str(case.label_path), "empty label map (no bone)"))
    return problems
