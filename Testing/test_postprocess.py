"""Anatomical post-processing: growth-plate fragments kept, islands removed, holes filled, warnings."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from pbseg_training.phantoms import generate_phantom
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.labelmaps import bone_boxes
from PediatricBoneSegLib.pipeline.postprocess import MAX_FRAGMENT_GAP_MM, clean_labels, plausibility_warnings

KNEE = get_joint("knee")
FEMUR, TIBIA, PATELLA, FIBULA = (KNEE.label_of(b) for b in ("femur", "tibia", "patella", "fibula"))
SPACING = (1.0, 0.5, 0.5)  # z (S), y (P), x (L): the identity direction makes the array canonical


def _ellipsoid(shape: tuple[int, int, int], centre: tuple[float, ...], semi_axes_mm: tuple[float, ...]) -> np.ndarray:
    grid = np.indices(shape).astype(float) * np.asarray(SPACING)[:, None, None, None]
    centre_mm = np.asarray(centre) * np.asarray(SPACING)
    return (((grid - centre_mm[:, None, None, None]) / np.asarray(semi_axes_mm)[:, None, None, None]) ** 2).sum(0) <= 1


def _knee() -> np.ndarray:
    """A plausible knee: femur (superior) with a distal epiphysis cut off by a 2 mm growth plate,
    tibia below, patella in front of the femur, fibula beside the tibia."""
    shape = (90, 80, 80)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[_ellipsoid(shape, (66, 40, 40), (22, 12, 12))] = FEMUR
    labels[52:55][labels[52:55] == FEMUR] = 0  # the physis: 3 slices of 1 mm
    labels[_ellipsoid(shape, (20, 40, 40), (18, 11, 11))] = TIBIA
    labels[_ellipsoid(shape, (55, 10, 40), (6, 3, 5))] = PATELLA
    labels[_ellipsoid(shape, (15, 50, 65), (12, 3, 3))] = FIBULA
    return labels


def test_epiphysis_beyond_the_growth_plate_is_kept_and_a_distant_island_removed() -> None:
    labels = _knee()
    epiphysis = (labels == FEMUR) & (np.arange(90)[:, None, None] < 52)
    assert epiphysis.sum() > 0.05 * (labels == FEMUR).sum()  # a real fragment below the physis
    island = np.zeros_like(labels, dtype=bool)
    island[0:10, 0:10, 0:10] = True  # a large femur-labelled blob far from the femur (a false positive)
    assert island.sum() > 0.01 * (labels == FEMUR).sum()  # large enough: only its distance condemns it
    labels[island] = FEMUR
    cleaned, warnings = clean_labels(labels, SPACING, "knee")
    assert (cleaned[epiphysis] == FEMUR).all()
    assert (cleaned[island] == 0).all()
    assert (cleaned == TIBIA).sum() == (labels == TIBIA).sum()
    assert warnings == []


def test_small_speck_near_the_bone_is_removed() -> None:
    labels = _knee()
    speck = (20, 14, 40)  # one tibia voxel 2 mm in front of the tibia: far below 1% of its volume
    assert labels[speck] == 0 and labels[20, 18, 40] == TIBIA
    labels[speck] = TIBIA
    cleaned, _ = clean_labels(labels, SPACING, "knee")
    assert cleaned[speck] == 0
    assert MAX_FRAGMENT_GAP_MM > 2.0  # it went for its size, not its distance


def test_internal_holes_are_filled() -> None:
    labels = _knee()
    hole = _ellipsoid(labels.shape, (20, 40, 40), (6, 4, 4))
    labels[hole] = 0
    labels[20, 40, 40] = PATELLA  # a patella island inside the tibia's cavity
    open_notch = np.zeros_like(hole)
    open_notch[20, 16:22, 40] = True  # a notch open to the outside is no hole
    labels[open_notch] = 0
    cleaned, _ = clean_labels(labels, SPACING, "knee")
    assert (cleaned[hole] == TIBIA).all()  # the island went, then the enclosed cavity was filled
    assert (cleaned[open_notch] == 0).all()


def test_one_label_per_voxel_and_unknown_values_removed() -> None:
    labels = _knee()
    labels[0:3, 0:3, 0:3] = 9  # not a knee label
    cleaned, _ = clean_labels(labels, SPACING, "knee")
    assert cleaned.dtype == np.uint8
    assert set(np.unique(cleaned)) <= set(range(KNEE.num_classes))
    assert (cleaned[0:3, 0:3, 0:3] == 0).all()


def test_missing_bone_and_implausible_volume_are_warned() -> None:
    labels = _knee()
    labels[labels == FIBULA] = 0
    warnings = plausibility_warnings(labels, SPACING, "knee")
    assert any("Fibula" in w and "not found" in w for w in warnings)
    tiny = plausibility_warnings(labels, (0.1, 0.1, 0.1), "knee")  # same voxels, 1/250 of the volume
    assert any("Femur" in w and "outside the plausible range" in w for w in tiny)


def test_impossible_relative_position_is_warned_in_patient_axes() -> None:
    labels = _knee()
    assert plausibility_warnings(labels, SPACING, "knee") == []
    upside_down = labels[::-1]  # tibia above the femur, patella still anterior
    warnings = plausibility_warnings(upside_down, SPACING, "knee")
    assert any("Femur lies inferior to the Tibia" in w for w in warnings)
    # The same flipped array is plausible again when its direction says the z axis points inferior.
    flipped_direction = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    assert plausibility_warnings(upside_down, SPACING, "knee", flipped_direction) == []
    patella_behind = labels[:, ::-1]
    assert any("Patella lies posterior" in w for w in plausibility_warnings(patella_behind, SPACING, "knee"))


@pytest.mark.parametrize("joint", ["knee", "ankle", "shoulder"])
def test_phantom_truth_passes_unchanged_and_without_warnings(joint: str) -> None:
    """Realistic anatomy (growth plates, thin bones, random pose): nothing removed, nothing flagged."""
    phantom = generate_phantom(joint, seed=1, voxel_scale=2.0, version="1.0")
    labels = sitk.GetArrayFromImage(phantom.labels)
    spacing_zyx = phantom.labels.GetSpacing()[::-1]
    cleaned, warnings = clean_labels(labels, spacing_zyx, joint, phantom.labels.GetDirection())
    np.testing.assert_array_equal(cleaned, labels)
    assert warnings == []
    if joint == "shoulder":  # its humerus is split by the growth plate: both parts were kept
        humerus = labels == get_joint(joint).label_of("humerus")
        assert ndimage.label(humerus, structure=np.ones((3, 3, 3)))[1] >= 2


@pytest.mark.parametrize("joint", ["knee", "ankle", "shoulder"])
def test_generator_2_truth_in_any_protocol_and_pose_passes_unchanged(joint: str) -> None:
    """Flexed, deformed, tilted anatomy in any plane (generator 2.0): the truth of the first cases
    that show every bone at a plausible size is neither changed nor flagged."""
    spec, checked = get_joint(joint), 0
    for seed in range(1, 40):
        phantom = generate_phantom(joint, seed, voxel_scale=1.25)
        labels = sitk.GetArrayFromImage(phantom.labels)
        voxel_ml = np.prod(phantom.labels.GetSpacing()) / 1000.0
        volumes = [np.count_nonzero(labels == spec.label_of(bone.key)) * voxel_ml for bone in spec.bones]
        if any(volume < bone.volume_range_ml[0] for volume, bone in zip(volumes, spec.bones)):
            continue  # a bone (almost) outside the field of view is rightly reported
        spacing, direction = phantom.labels.GetSpacing()[::-1], phantom.labels.GetDirection()
        cleaned, warnings = clean_labels(labels, spacing, joint, direction)
        np.testing.assert_array_equal(cleaned, labels)
        assert warnings == [], (seed, phantom.parameters["protocol"], warnings)
        checked += 1
        if checked == 3:
            return
    pytest.fail(f"fewer than 3 {joint} phantoms with every bone in view")


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_bone_boxes_ignore_values_outside_the_joint(dtype: type) -> None:
    labels = np.zeros((6, 7, 8), dtype=dtype)
    labels[1:3, 2:4, 3:5] = 2
    labels[4, 5, 6] = 9  # not a knee label: ignored
    if dtype != np.uint8:
        labels[0, 0, 0] = -1
    boxes = bone_boxes(labels, get_joint("knee").num_classes)
    assert boxes == [None, (slice(1, 3), slice(2, 4), slice(3, 5)), None, None]
