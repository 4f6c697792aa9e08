"""Raw-layout datasets: reading, atomic writing, and a validator that reports every defect
(one crafted dataset per defect, then all of them at once), plus ``pbseg validate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.cli import main as pbseg
from PediatricBoneSegLib.dataset import DatasetError, RawDataset, validate_dataset, write_raw_dataset

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


@pytest.mark.parametrize(("shape", "dimension"), [((9, 11), 2), ((2, 6, 9, 11), 4)])
def test_not_a_3d_image(good: Path, shape: tuple[int, ...], dimension: int) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.ones(shape, np.float32), isVector=False), str(image_path(good, "case_0")))
    assert problems_by_file(good) == {"case_0_0000.nii.gz": [f"{dimension}D image; a 3D volume is required"]}


def test_nan_intensities(good: Path) -> None:
    image = sitk.ReadImage(str(image_path(good, "case_1")))
    array = sitk.GetArrayFromImage(image)
    array[2, 3, 4] = np.nan
    array[0, 0, 0] = np.inf
    sitk.WriteImage(with_array(image, array), str(image_path(good, "case_1")))
    assert problems_by_file(good) == {"case_1_0000.nii.gz": ["2 NaN or infinite voxel(s)"]}


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
