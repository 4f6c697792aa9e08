"""Phantom generator 2.0: a clinical protocol per case (tissue orderings of each family), growth
plates inside their bones, recorded parameters that match the image, determinism, tissue maps in
the dataset, leave-protocol-out datasets, and generator 1.0 still rendering the committed
experiment's phantoms. Small volumes (voxel_scale >= 1.5)."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
import SimpleITK as sitk

from pbseg_training.dataset import RawDataset, validate_dataset
from pbseg_training.phantoms import generate_phantom, write_phantom_dataset
from pbseg_training.phantoms.appearance import TISSUES
from pbseg_training.phantoms.protocols import FAMILIES, SIGNAL_RANGES
from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint

SCALE = 2.0


@cache
def phantom(joint: str, seed: int, age: float | None = None, protocol: str | None = None, version: str = "2.0"):
    return generate_phantom(joint, seed, age, SCALE, version=version, protocol=protocol)


def array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def tissue_mean(p, tissue: str, within_bone: bool | None = None) -> float:
    """Mean image intensity over the voxels whose dominant tissue is ``tissue``."""
    mask = array(p.tissues) == TISSUES.index(tissue)
    if within_bone is not None:
        mask &= (array(p.labels) > 0) == within_bone
    assert mask.sum() > 20, tissue
    return float(array(p.image)[mask].mean())


@pytest.mark.parametrize("joint", JOINT_KEYS)
def test_same_seed_gives_identical_cases(joint: str) -> None:
    first = generate_phantom(joint, 21, voxel_scale=SCALE)
    second = generate_phantom(joint, 21, voxel_scale=SCALE)
    for a, b in ((first.image, second.image), (first.labels, second.labels), (first.tissues, second.tissues)):
        assert np.array_equal(array(a), array(b))
    assert first.parameters == second.parameters
    assert first.parameters != generate_phantom(joint, 22, voxel_scale=SCALE).parameters


def test_every_family_has_a_complete_table_and_the_families_differ() -> None:
    assert set(FAMILIES) >= {"T1", "T1_FS", "T2", "T2_FS", "PD", "PD_FS", "STIR", "GRE"}
    for table in SIGNAL_RANGES.values():
        assert set(table) == set(TISSUES)
    drawn = {phantom("knee", seed).parameters["protocol"]["family"] for seed in range(12)}
    assert len(drawn) >= 5


@pytest.mark.parametrize("joint", JOINT_KEYS)
def test_marrow_is_brighter_than_muscle_in_t1_and_darker_in_pd_fat_sat(joint: str) -> None:
    """Same case (seed, age 16: yellow marrow), two protocols: the tissue ordering flips."""
    t1, pd_fs = phantom(joint, 3, 16.0, "T1"), phantom(joint, 3, 16.0, "PD_FS")
    assert tissue_mean(t1, "marrow", True) > 1.5 * tissue_mean(t1, "muscle", False)
    assert tissue_mean(pd_fs, "marrow", True) < 0.8 * tissue_mean(pd_fs, "muscle", False)
    assert tissue_mean(t1, "fat", False) > tissue_mean(t1, "muscle", False)
    assert tissue_mean(pd_fs, "fat", False) < tissue_mean(pd_fs, "muscle", False)
    # The protocol changes the contrast only: same anatomy, same labels.
    assert np.array_equal(array(t1.labels), array(pd_fs.labels))


def test_fluid_is_bright_in_t2_and_dark_in_t1() -> None:
    t1, t2 = phantom("knee", 4, 12.0, "T1"), phantom("knee", 4, 12.0, "T2")
    assert tissue_mean(t2, "fluid") > 1.5 * tissue_mean(t2, "muscle", False)
    assert tissue_mean(t1, "fluid") < tissue_mean(t1, "muscle", False)


def _physis_enclosed_share(p, reach: int = 6) -> float:
    """Share of growth-plate voxels with bone on both sides along some axis within ``reach``."""
    bone = array(p.labels) > 0
    physis = array(p.tissues) == TISSUES.index("physis")
    enclosed = np.zeros_like(physis)
    for axis in range(3):
        before, after = np.zeros_like(physis), np.zeros_like(physis)
        for step in range(1, reach + 1):
            before |= np.roll(bone, step, axis)
            after |= np.roll(bone, -step, axis)
        enclosed |= before & after
    return float((enclosed & physis).sum() / max(physis.sum(), 1))


@pytest.mark.parametrize("joint", JOINT_KEYS)
def test_the_growth_plate_lies_inside_its_bone(joint: str) -> None:
    """Generator 1.0 drew the plate as a slab reaching the cartilage surface, beyond the bone's
    outline (the check sees it); 2.0 confines it to the bone."""
    for seed in (1, 2):
        young = generate_phantom(joint, seed, 7.0, 1.5)
        assert (array(young.tissues) == TISSUES.index("physis")).sum() > 50
        assert _physis_enclosed_share(young) > 0.8
    assert _physis_enclosed_share(generate_phantom(joint, 1, 7.0, 1.5, version="1.0")) < 0.7


@pytest.mark.parametrize("joint", JOINT_KEYS)
def test_recorded_parameters_match_the_image(joint: str) -> None:
    for seed in (5, 6, 7):
        p = phantom(joint, seed)
        recorded = p.parameters
        assert json.loads(json.dumps(recorded)) == recorded  # JSON-ready
        assert recorded["spacing"] == list(p.image.GetSpacing()) and recorded["size"] == list(p.image.GetSize())
        assert recorded["direction"] == list(p.image.GetDirection())
        assert (recorded["age_years"], recorded["side"], recorded["joint"]) == (p.age_years, p.side, joint)
        protocol = recorded["protocol"]
        assert p.image.GetSpacing()[2] == pytest.approx(protocol["spacing"] * SCALE)
        slice_normal = np.argmax(np.abs(np.array(p.image.GetDirection()).reshape(3, 3)[:, 2]))
        assert slice_normal == {"sagittal": 0, "coronal": 1, "axial": 2}[protocol["plane"]]
        # The recorded signals order the image's tissues: fat vs muscle as recorded.
        fat_brighter = recorded["signal"]["fat"] > recorded["signal"]["muscle"]
        assert (tissue_mean(p, "fat", False) > tissue_mean(p, "muscle", False)) == fat_brighter
        labels = array(p.labels)
        faces = np.concatenate([f.ravel() for f in (labels[0], labels[-1], labels[:, 0], labels[:, -1])])
        faces = np.concatenate([faces, labels[:, :, 0].ravel(), labels[:, :, -1].ravel()])
        catalog = get_joint(joint)
        assert sorted(recorded["cut_bones"]) == sorted(
            bone.key for bone in catalog.bones if catalog.label_of(bone.key) in faces
        )


def test_cases_vary_in_plane_resolution_flexion_and_cut_bones() -> None:
    drawn = [phantom("knee", seed).parameters for seed in range(12)]
    assert {d["protocol"]["plane"] for d in drawn} == {"sagittal", "coronal", "axial"}
    assert {d["protocol"]["acquisition"] for d in drawn} == {"2D", "3D"}
    assert max(d["flexion_deg"] for d in drawn) - min(d["flexion_deg"] for d in drawn) > 10
    assert any(d["cut_bones"] for d in drawn)
    assert all(0.0 <= d["limb_deformation_mm"] <= 6.0 for d in drawn)


def test_red_marrow_converts_with_age() -> None:
    young, old = phantom("knee", 8, 3.0, "T1"), phantom("knee", 8, 16.0, "T1")
    assert young.parameters["red_marrow"]["diaphysis"] > old.parameters["red_marrow"]["diaphysis"] + 0.4
    # T1: red marrow is darker than yellow, so the young child's marrow is darker.
    ratio = {age: tissue_mean(p, "marrow", True) / tissue_mean(p, "fat", False) for age, p in ((3, young), (16, old))}
    assert ratio[3] < ratio[16] - 0.1


def test_a_given_contrast_replaces_the_drawn_signals() -> None:
    drawn = phantom("ankle", 9, 12.0, "T1")
    inverted = {tissue: 1.0 - value if tissue != "air" else 0.0 for tissue, value in drawn.parameters["signal"].items()}
    p = generate_phantom("ankle", 9, 12.0, SCALE, protocol="T1", contrast=inverted)
    peak = max(inverted.values())
    assert p.parameters["signal"] == pytest.approx({t: v / peak for t, v in inverted.items()})
    assert np.array_equal(array(p.labels), array(drawn.labels))
    # T1 fat is bright; with the inverted table it is darker than muscle.
    assert tissue_mean(drawn, "fat", False) > tissue_mean(drawn, "muscle", False)
    assert tissue_mean(p, "fat", False) < tissue_mean(p, "muscle", False)
    with pytest.raises(ValueError, match="contrast must give"):
        generate_phantom("ankle", 9, voxel_scale=4.0, contrast={"fat": 1.0})


def test_bad_protocol_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown protocol family"):
        generate_phantom("knee", 1, voxel_scale=4.0, protocol="T3")
    with pytest.raises(ValueError, match="version 2.0"):
        generate_phantom("knee", 1, voxel_scale=4.0, version="1.0", protocol="T1")
    with pytest.raises(ValueError, match="generator version"):
        generate_phantom("knee", 1, voxel_scale=4.0, version="3.0")


def test_dataset_has_tissue_maps_parameters_and_can_leave_protocols_out(tmp_path) -> None:
    out = write_phantom_dataset("ankle", 6, 8, tmp_path / "ankle", voxel_scale=4.0, exclude_protocols=("T1", "T1_FS"))
    assert validate_dataset(out) == []
    dataset = RawDataset(out)
    families = set()
    for case in dataset.cases:
        assert case.tissue_path is not None and case.parameters_path is not None
        tissues = array(sitk.ReadImage(str(case.tissue_path)))
        labels = array(sitk.ReadImage(str(case.label_path)))
        assert tissues.shape == labels.shape and tissues.max() < len(TISSUES)
        families.add(case.parameters()["protocol"]["family"])
    assert families and not families & {"T1", "T1_FS"}
    assert json.loads((out / "dataset.json").read_text())["excluded_protocols"] == ["T1", "T1_FS"]
    with pytest.raises(ValueError, match="exclude_protocols"):
        write_phantom_dataset("ankle", 1, 8, tmp_path / "none", voxel_scale=4.0, exclude_protocols=tuple(FAMILIES))


# Generator 1.0 (the committed experiment's phantoms): voxel counts per label and image moments of
# seed 7 at voxel_scale 3, recorded before generator 2.0 existed (tolerant to last-bit differences
# of float32 maths between CPUs).
V1_REFERENCE = {
    "knee": ([61152, 3890, 2964, 448, 197], 116.038, 111.505),
    "ankle": ([131479, 1541, 919, 2222], 67.614, 101.237),
    "shoulder": ([203665, 5589, 3738], 174.987, 129.863),
}


@pytest.mark.parametrize("joint", JOINT_KEYS)
def test_generator_1_still_renders_the_experiment_phantoms(joint: str) -> None:
    p = generate_phantom(joint, 7, voxel_scale=3.0, version="1.0")
    counts, mean, std = V1_REFERENCE[joint]
    labels, image = array(p.labels), array(p.image)
    assert np.allclose(np.bincount(labels.ravel()), counts, rtol=0.005, atol=3)
    assert float(image.mean()) == pytest.approx(mean, rel=1e-3)
    assert float(image.std()) == pytest.approx(std, rel=1e-3)
    assert p.parameters["generator_version"] == "1.0" and "protocol" not in p.parameters


def test_the_permutation_study_hands_every_tissue_another_signal() -> None:
    from pbseg_training.permutation_study import permuted_contrast

    signal = phantom("knee", 2, 12.0, "PD_FS").parameters["signal"]
    permuted = permuted_contrast(signal, 5)
    assert set(permuted) == set(TISSUES) and permuted["air"] == 0.0
    others = [t for t in TISSUES if t != "air"]
    assert sorted(permuted[t] for t in others) == sorted(signal[t] for t in others)
    assert all(permuted[t] != signal[t] for t in others)
    assert permuted == permuted_contrast(signal, 5) and permuted != permuted_contrast(signal, 6)
