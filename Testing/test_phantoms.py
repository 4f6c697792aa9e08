"""Pediatric joint phantoms of generator 1.0 (one contrast per joint, the committed experiment's
data): determinism, labels, geometry, growth plates, per-joint contrast; and, for the current
generator, raw-layout output, the QC montage and ``pbseg phantoms``. Small volumes
(voxel_scale >= 2). Generator 2.0's own properties: test_phantoms_v2.py."""

from __future__ import annotations

import json
from functools import cache

import matplotlib.image
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage, stats

from pbseg_training.dataset import RawDataset, validate_dataset
from pbseg_training.phantoms import GENERATOR_VERSION, case_seed, generate_phantom, write_phantom_dataset
from pbseg_training.phantoms.appearance import CONTRASTS, TISSUES
from pbseg_training.phantoms.montage import save_montage
from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint
from PediatricBoneSegLib.cli import main as pbseg
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.pipeline.preprocessing import normalize_intensities

SCALE = 2.0


@cache
def phantom(joint: str, seed: int, age: float | None = None, scale: float = SCALE):
    return generate_phantom(joint, seed, age, scale, version="1.0")


def arrays(p) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(p.image), sitk.GetArrayFromImage(p.labels)


@pytest.mark.parametrize("joint", JOINT_KEYS)
def test_same_seed_gives_identical_volumes(joint: str) -> None:
    first = generate_phantom(joint, 11, voxel_scale=SCALE, version="1.0")
    second = generate_phantom(joint, 11, voxel_scale=SCALE, version="1.0")
    image_a, labels_a = arrays(first)
    image_b, labels_b = arrays(second)
    assert np.array_equal(image_a, image_b)
    assert np.array_equal(labels_a, labels_b)
    assert first.image.GetOrigin() == second.image.GetOrigin()
    assert (first.age_years, first.side) == (second.age_years, second.side)


@pytest.mark.parametrize("joint", JOINT_KEYS)
def test_different_seeds_give_different_anatomy(joint: str) -> None:
    bones = get_joint(joint).bones
    volumes = []
    for seed in (1, 2, 3):
        p = phantom(joint, seed, 9.0)  # same age: differences come from shape, pose and acquisition
        labels = arrays(p)[1]
        voxel_ml = np.prod(p.labels.GetSpacing()) / 1000.0
        volumes.append([np.count_nonzero(labels == i + 1) * voxel_ml for i in range(len(bones))])
    volumes = np.array(volumes)
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.abs(volumes[a] - volumes[b]).max() / volumes.max() > 0.01


@pytest.mark.parametrize("joint", JOINT_KEYS)
@pytest.mark.parametrize("age", [2.0, None, 17.0])
def test_labels_are_exactly_the_catalogs(joint: str, age: float | None) -> None:
    for seed in (4, 5):
        labels = arrays(phantom(joint, seed, age))[1]
        assert labels.dtype == np.uint8
        assert sorted(np.unique(labels).tolist()) == sorted(get_joint(joint).labels.values())


@pytest.mark.parametrize("joint", JOINT_KEYS)
def test_bone_volumes_are_plausible(joint: str) -> None:
    catalog = get_joint(joint)
    for seed, age in ((6, 2.0), (6, 17.0), (7, None)):
        p = phantom(joint, seed, age)
        labels = arrays(p)[1]
        voxel_ml = np.prod(p.labels.GetSpacing()) / 1000.0
        for bone in catalog.bones:
            volume = np.count_nonzero(labels == catalog.label_of(bone.key)) * voxel_ml
            low, high = bone.volume_range_ml
            assert low <= volume <= high, (joint, seed, age, bone.key, volume)


@pytest.mark.parametrize("joint", JOINT_KEYS)
def test_image_and_labels_share_an_anisotropic_axis_aligned_geometry(joint: str) -> None:
    p = phantom(joint, 8)
    image, labels = p.image, p.labels
    assert image.GetPixelID() == sitk.sitkFloat32
    assert labels.GetPixelID() == sitk.sitkUInt8
    assert image.GetSize() == labels.GetSize()
    assert image.GetSpacing() == labels.GetSpacing()
    assert image.GetOrigin() == labels.GetOrigin()
    assert image.GetDirection() == labels.GetDirection()
    spacing = np.array(image.GetSpacing()) / SCALE
    assert np.argmax(spacing) == 2 and spacing[2] >= 2.5 and 0.3 <= spacing[0] == spacing[1] <= 0.6
    direction = np.array(image.GetDirection()).reshape(3, 3)
    assert np.allclose(np.abs(direction).sum(axis=0), 1.0) and np.allclose(np.abs(direction).max(axis=0), 1.0)
    slice_normal = np.argmax(np.abs(direction[:, 2]))  # physical axis: 0 L-R (sagittal), 1 A-P (coronal)
    assert slice_normal == (1 if joint == "shoulder" else 0)


def test_full_resolution_case_has_a_realistic_field_of_view() -> None:
    p = generate_phantom("knee", 3, 12.0, version="1.0")
    size, spacing = np.array(p.image.GetSize()), np.array(p.image.GetSpacing())
    assert 110 <= size[0] * spacing[0] <= 175
    assert 3.0 <= spacing[2] <= 4.0 and 18 <= size[2] <= 45
    image = sitk.GetArrayViewFromImage(p.image)
    assert np.isfinite(image).all() and image.min() >= 0.0


@pytest.mark.parametrize(("joint", "bone"), [("knee", "femur"), ("knee", "tibia"), ("ankle", "tibia")])
def test_open_growth_plate_splits_a_long_bone_in_two(joint: str, bone: str) -> None:
    label = get_joint(joint).label_of(bone)
    for seed in (1, 2):
        young = arrays(phantom(joint, seed, 6.0))[1] == label
        old = arrays(phantom(joint, seed, 17.0))[1] == label
        assert ndimage.label(young)[1] == 2
        assert ndimage.label(old)[1] == 1


def _normalized_bone_intensities(joint: str) -> np.ndarray:
    """Bone intensities of four cases after the network's own normalization (gain-free)."""
    pooled = []
    for seed in (1, 2, 3, 4):
        image, labels = arrays(phantom(joint, seed))
        pooled.append(normalize_intensities(image, PreprocessingConfig())[labels > 0])
    return np.concatenate(pooled)


def test_the_three_domains_have_measurably_different_contrast() -> None:
    bone = {joint: _normalized_bone_intensities(joint) for joint in JOINT_KEYS}
    # Knee PD fat-sat: dark marrow; shoulder T2: intermediate; ankle T1: bright marrow.
    medians = {joint: float(np.median(values)) for joint, values in bone.items()}
    assert medians["knee"] + 0.3 < medians["shoulder"] < medians["ankle"] - 0.3
    for a, b in (("knee", "ankle"), ("knee", "shoulder"), ("ankle", "shoulder")):
        assert stats.ks_2samp(bone[a][::4], bone[b][::4]).statistic > 0.15, (a, b)


def test_every_joint_has_its_own_complete_contrast_table() -> None:
    assert set(CONTRASTS) == set(JOINT_KEYS)
    for table in CONTRASTS.values():
        assert set(table) == set(TISSUES)
    tissues = ("marrow", "fat", "muscle", "cartilage", "fluid")
    for a, b in (("knee", "ankle"), ("knee", "shoulder"), ("ankle", "shoulder")):
        assert max(abs(CONTRASTS[a][t] - CONTRASTS[b][t]) for t in tissues) > 0.2, (a, b)


def test_both_sides_and_the_whole_age_range_occur() -> None:
    drawn = [phantom("ankle", seed) for seed in range(8)]
    assert {p.side for p in drawn} == {"left", "right"}
    ages = [p.age_years for p in drawn]
    assert min(ages) >= 2.0 and max(ages) <= 17.0 and max(ages) - min(ages) > 5.0


def test_left_is_the_mirror_of_right_in_the_scanner() -> None:
    """The fibula lies lateral to the tibia: towards patient right (-x) in a right knee."""
    for seed in range(6):
        p = phantom("knee", seed)
        labels = arrays(p)[1]
        index = [np.argwhere(labels == get_joint("knee").label_of(b)).mean(axis=0) for b in ("tibia", "fibula")]
        # numpy (k, j, i) -> ITK (i, j, k) -> physical LPS
        physical = [np.array(p.labels.TransformContinuousIndexToPhysicalPoint(tuple(c[::-1]))) for c in index]
        lateral_is_left = physical[1][0] > physical[0][0]
        assert lateral_is_left == (p.side == "left")


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown joint"):
        generate_phantom("elbow", 1)
    with pytest.raises(ValueError, match="age_years"):
        generate_phantom("knee", 1, age_years=30.0)


def test_dataset_is_written_in_the_raw_layout_and_validates(tmp_path) -> None:
    out = write_phantom_dataset("knee", 2, 5, tmp_path / "knee", voxel_scale=3.0)
    assert validate_dataset(out) == []
    metadata = json.loads((out / "dataset.json").read_text())
    assert metadata["labels"] == get_joint("knee").labels
    assert metadata["numTraining"] == 2 and metadata["file_ending"] == ".nii.gz" and metadata["joint"] == "knee"
    assert metadata["generator_version"] == GENERATOR_VERSION and metadata["channel_names"] == {"0": "MR"}
    dataset = RawDataset(out)
    assert [c.case_id for c in dataset.cases] == ["knee_000", "knee_001"]
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset.cases[1].label_path)))
    expected = arrays(generate_phantom("knee", case_seed(5, 1), voxel_scale=3.0))[1]
    assert np.array_equal(written, expected)
    with pytest.raises(FileExistsError):
        write_phantom_dataset("knee", 1, 5, out, voxel_scale=3.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["knee"]  # no temporary folder left


def test_cli_writes_nrrd_dataset_and_montage(tmp_path, capsys) -> None:
    out, png = tmp_path / "ankle", tmp_path / "montage.png"
    args = ["phantoms", "--joint", "ankle", "--n", "2", "--seed", "3", "-o", str(out), "--format", "nrrd"]
    assert pbseg([*args, "--voxel-scale", "3", "--montage", str(png)]) == 0
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["ankle_000_0000.nrrd", "ankle_001_0000.nrrd"]
    assert pbseg(["validate", str(out)]) == 0
    assert "no problems" in capsys.readouterr().out
    picture = matplotlib.image.imread(png)
    assert picture.shape[0] > 300 and picture[..., :3].std() > 0.05
    assert pbseg([*args, "--voxel-scale", "3"]) == 2  # existing, non-empty output folder


def test_montage_shows_each_phantom(tmp_path) -> None:
    phantoms = [phantom(joint, 1) for joint in JOINT_KEYS]
    path = save_montage(phantoms, tmp_path / "qc.png")
    picture = matplotlib.image.imread(path)
    one_row = save_montage(phantoms[:1], tmp_path / "one.png")
    assert picture.shape[0] > 2.5 * matplotlib.image.imread(one_row).shape[0]
    red, green = picture[..., 0], picture[..., 1]
    assert np.abs(red - green).max() > 0.2  # colored label overlay present
    wide = matplotlib.image.imread(save_montage(phantoms[:2], tmp_path / "wide.png", per_row=2))
    assert wide.shape[1] > 1.8 * matplotlib.image.imread(one_row).shape[1]
    with pytest.raises(ValueError):
        save_montage([], tmp_path / "none.png")
