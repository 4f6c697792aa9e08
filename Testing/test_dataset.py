"""Raw-layout datasets: reading, atomic writing, and a validator that reports every defect
(one crafted dataset per defect, then all of them at once), plus ``pbseg validate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pbseg_training.dataset import DatasetError, RawDataset, validate_dataset, write_raw_dataset
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.cli import main as pbseg

SHAPE = (6, 9, 11)  # numpy (k, j, i)


def volume_pair(seed: int) -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.uniform(10.0, 100.0, SHAPE).astype(np.float32))
    labels_array = np.zeros(SHAPE, np.uint8)
    labels_array[1:4, 2:6, 3:8] = 1
    labels_array[4:6, 2:5, 3:6] = 2
    labels = sitk.GetImageFromArray(labels_array)
    for item in (image, labels):
        item.SetSpacing((0.5, 0.5, 3.0))
        item.SetOrigin((-10.0, 4.0, 2.5))
        item.SetDirection((0, 0, -1, 1, 0, 0, 0, -1, 0))
    return image, labels


@pytest.fixture
def good(tmp_path: Path) -> Path:
    cases = ((f"case_{i}", *volume_pair(i)) for i in range(3))
    return write_raw_dataset(tmp_path / "knee", "knee", cases, 3)


def image_path(root: Path, case: str) -> Path:
    return root / "imagesTr" / f"{case}_0000.nii.gz"


def label_path(root: Path, case: str) -> Path:
    return root / "labelsTr" / f"{case}.nii.gz"


def rewrite_label(root: Path, case: str, change) -> None:
    labels = sitk.ReadImage(str(label_path(root, case)))
    sitk.WriteImage(change(labels), str(label_path(root, case)))


def with_array(image: sitk.Image, array: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def problems_by_file(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in validate_dataset(root):
        found.setdefault(Path(problem.path).name, []).append(problem.message)
    return found


def test_good_dataset_has_no_problems_and_reads(good: Path) -> None:
    assert validate_dataset(good) == []
    dataset = RawDataset(good)
    assert dataset.joint == "knee" and dataset.labels == get_joint("knee").labels
    assert [c.case_id for c in dataset.cases] == ["case_0", "case_1", "case_2"]
    assert dataset.cases[0].image_path == image_path(good, "case_0")


def test_joint_is_recognised_from_the_labels_alone(good: Path) -> None:
    metadata = json.loads((good / "dataset.json").read_text())
    del metadata["joint"]
    (good / "dataset.json").write_text(json.dumps(metadata))
    assert RawDataset(good).joint == "knee"
    assert validate_dataset(good) == []


def test_missing_label(good: Path) -> None:
    label_path(good, "case_1").unlink()
    assert problems_by_file(good) == {"case_1_0000.nii.gz": ["no label case_1.nii.gz for this image"]}


def test_missing_image(good: Path) -> None:
    image_path(good, "case_2").unlink()
    assert problems_by_file(good) == {"case_2.nii.gz": ["no image case_2_0000.nii.gz for this label"]}


@pytest.mark.parametrize(
    ("attribute", "change"),
    [
        ("size", lambda img: sitk.ConstantPad(img, (0, 0, 0), (0, 0, 1))),
        ("spacing", lambda img: (img.SetSpacing((0.5, 0.6, 3.0)), img)[1]),
        ("origin", lambda img: (img.SetOrigin((-10.0, 4.0, 3.5)), img)[1]),
        ("direction", lambda img: (img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1)), img)[1]),
    ],
)
def test_geometry_mismatch(good: Path, attribute: str, change) -> None:
    rewrite_label(good, "case_0", change)
    found = problems_by_file(good)
    assert list(found) == ["case_0.nii.gz"] and len(found["case_0.nii.gz"]) == 1
    assert found["case_0.nii.gz"][0].startswith(f"geometry mismatch: {attribute} ")


def test_label_values_not_in_dataset_json(good: Path) -> None:
    def add_unknown(labels: sitk.Image) -> sitk.Image:
        array = sitk.GetArrayFromImage(labels)
        array[0, 0, 0], array[0, 0, 1] = 7, 9
        return with_array(labels, array)

    rewrite_label(good, "case_1", add_unknown)
    assert problems_by_file(good) == {"case_1.nii.gz": ["label values 7, 9 are not in dataset.json"]}


def test_empty_label(good: Path) -> None:
    rewrite_label(good, "case_2", lambda labels: labels * 0)
    assert problems_by_file(good) == {"case_2.nii.gz": ["empty label map (no bone)"]}


@pytest.mark.parametrize(
    ("shape", "message"),
    [((9, 11), "is a 2D image; a 3D volume is needed"), ((2, 6, 9, 11), "is a 4D image (size (11, 9, 6, 2)): split")],
)
def test_not_a_3d_image(good: Path, shape: tuple[int, ...], message: str) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.ones(shape, np.float32), isVector=False), str(image_path(good, "case_0")))
    found = problems_by_file(good)
    assert list(found) == ["case_0_0000.nii.gz"] and len(found["case_0_0000.nii.gz"]) == 1
    assert found["case_0_0000.nii.gz"][0].startswith(message)


def test_nan_intensities(good: Path) -> None:
    image = sitk.ReadImage(str(image_path(good, "case_1")))
    array = sitk.GetArrayFromImage(image)
    array[2, 3, 4] = np.nan
    array[0, 0, 0] = np.inf
    sitk.WriteImage(with_array(image, array), str(image_path(good, "case_1")))
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(image_path(good, "case_1")))).min() == 0  # ITK: NaN -> 0
    message = "contains 2 NaN or infinite voxel value(s) (ITK would read them as zeros)"
    assert problems_by_file(good) == {"case_1_0000.nii.gz": [message]}


def test_labels_that_are_not_the_catalogs(good: Path) -> None:
    metadata = json.loads((good / "dataset.json").read_text())
    metadata["labels"] = {"background": 0, "femur": 1, "tibia": 2, "patella": 3, "meniscus": 4}
    (good / "dataset.json").write_text(json.dumps(metadata))
    found = problems_by_file(good)
    assert list(found) == ["dataset.json"]
    assert "do not match the catalog's knee labels" in found["dataset.json"][0]


def test_missing_or_broken_dataset_json(good: Path) -> None:
    (good / "dataset.json").write_text("{not json")
    assert list(problems_by_file(good)) == ["dataset.json"]
    with pytest.raises(DatasetError, match="dataset.json"):
        RawDataset(good)
    (good / "dataset.json").unlink()
    assert problems_by_file(good) == {"dataset.json": ["missing (a raw-layout dataset needs dataset.json)"]}


def test_every_problem_is_reported_at_once(good: Path, capsys) -> None:
    metadata = json.loads((good / "dataset.json").read_text())
    metadata["labels"]["meniscus"] = 5
    (good / "dataset.json").write_text(json.dumps(metadata))
    label_path(good, "case_0").unlink()
    rewrite_label(good, "case_1", lambda labels: (labels.SetSpacing((0.5, 0.5, 2.0)), labels * 0)[1])
    sitk.WriteImage(sitk.GetImageFromArray(np.full((9, 11), np.nan, np.float32)), str(image_path(good, "case_2")))
    (good / "imagesTr" / "stray.txt").write_text("?")

    found = problems_by_file(good)
    assert set(found) == {"dataset.json", "case_0_0000.nii.gz", "case_1.nii.gz", "case_2_0000.nii.gz", "stray.txt"}
    assert len(found["case_1.nii.gz"]) == 2  # spacing mismatch and empty label
    assert pbseg(["validate", str(good)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(validate_dataset(good)) + 1
    assert any("case_1.nii.gz: geometry mismatch: spacing" in line for line in lines)


def test_writer_is_atomic(tmp_path: Path) -> None:
    def failing_cases():
        yield ("case_0", *volume_pair(0))
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_raw_dataset(tmp_path / "ankle", "ankle", failing_cases(), 2)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="file format"):
        write_raw_dataset(tmp_path / "ankle", "ankle", iter(()), 0, file_format="mha")


def test_nrrd_datasets_validate(tmp_path: Path) -> None:
    root = write_raw_dataset(tmp_path / "shoulder", "shoulder", [("a", *volume_pair(1))], 1, file_format="nrrd")
    assert (root / "labelsTr" / "a.nrrd").is_file()
    assert validate_dataset(root) == []
    assert pbseg(["validate", str(root)]) == 0


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_files_and_empty_images_are_problems_and_listing_goes_on(good: Path) -> None:
    _truncate(image_path(good, "case_0"))
    _truncate(label_path(good, "case_1"))
    image = sitk.ReadImage(str(image_path(good, "case_2")))
    sitk.WriteImage(with_array(image, np.zeros(SHAPE, np.float32)), str(image_path(good, "case_2")))
    found = problems_by_file(good)
    assert set(found) == {"case_0_0000.nii.gz", "case_1.nii.gz", "case_2_0000.nii.gz"}
    assert found["case_0_0000.nii.gz"][0].startswith("is truncated: its header says 2376 bytes of voxel data")
    assert found["case_1.nii.gz"][0].startswith("is truncated: its header says 594 bytes of voxel data")
    assert found["case_2_0000.nii.gz"] == ["all voxels are zero: the volume is empty"]


def test_nan_in_a_nifti_label_is_a_problem(good: Path) -> None:
    def with_nan(labels: sitk.Image) -> sitk.Image:
        array = sitk.GetArrayFromImage(labels).astype(np.float32)
        array[0, 0, 0] = np.nan
        return with_array(labels, array)

    rewrite_label(good, "case_1", with_nan)
    assert problems_by_file(good) == {
        "case_1.nii.gz": ["contains 1 NaN or infinite voxel value(s) (ITK would read them as zeros)"]
    }


def test_a_sheared_image_is_a_problem(tmp_path: Path) -> None:
    image, labels = volume_pair(0)
    sine, cosine = np.sin(np.radians(20.0)), np.cos(np.radians(20.0))
    for item in (image, labels):
        item.SetDirection((1.0, sine, 0.0, 0.0, cosine, 0.0, 0.0, 0.0, 1.0))
    root = write_raw_dataset(tmp_path / "ankle", "ankle", [("a", image, labels)], 1, file_format="nrrd")
    found = {Path(p.path).name: p.message for p in validate_dataset(root)}
    shear = "the direction matrix is not orthogonal (shear of 20.00 degrees)"
    assert found == {"a_0000.nrrd": f"{shear}; resample the volume to an orthogonal grid"}


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_validate_on_a_missing_path_is_one_line_and_exit_2(tmp_path: Path, capsys, kind: str) -> None:
    path = tmp_path / "knee"
    if kind == "file":
        path.write_text("not a folder")
    assert pbseg(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    expected = "no such folder" if kind == "missing" else "is a file, not a dataset folder"
    assert captured.err == f"pbseg validate: error: {path}: {expected}\n"
