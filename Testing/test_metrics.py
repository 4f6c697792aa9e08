"""Segmentation metrics: agreement with MONAI on random anisotropic masks, hand-computed values,
empty-mask conventions, per-bone evaluation of label volumes and images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance
from scipy import ndimage

from pbseg_training.metrics import METRIC_KEYS, image_metrics, label_metrics, mask_metrics, surface_voxels
from PediatricBoneSegLib.catalog import get_joint


def _blob(rng: np.random.Generator, shape: tuple[int, ...], sigma: float, fraction: float) -> np.ndarray:
    """A random smooth mask covering about ``fraction`` of the array (several components, holes)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, 1 - fraction)


def _monai(prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> tuple[float, float, float]:
    def one_hot(mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(mask)[None, None].float()

    y_pred, y = one_hot(prediction), one_hot(truth)
    dice = float(compute_dice(y_pred, y, include_background=True)[0, 0])
    assd = compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True, spacing=spacing)
    assd = float(assd[0, 0])
    hausdorff = float(compute_hausdorff_distance(y_pred, y, include_background=True, spacing=spacing)[0, 0])
    return dice, assd, hausdorff


# MONAI's own call of its deprecated ``always_return_as_numpy`` argument warns; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")


@pytest.mark.parametrize("seed", range(6))
def test_metrics_agree_with_monai_on_random_anisotropic_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(14, 30, size=3))
    spacing = tuple(float(s) for s in rng.uniform(0.3, 3.5, size=3))
    sigma = float(rng.uniform(0.0, 2.5))  # 0: salt-and-pepper masks, many tiny surfaces
    truth = _blob(rng, shape, sigma, rng.uniform(0.05, 0.4))
    # a prediction that overlaps partly: the truth, shifted and perturbed
    prediction = np.roll(truth, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 3))) ^ (rng.random(shape) < 0.02)
    ours = mask_metrics(prediction, truth, spacing)
    dice, assd, hausdorff = _monai(prediction, truth, spacing)
    assert abs(ours["dice"] - dice) <= 1e-6
    assert abs(ours["assd"] - assd) <= 0.05
    assert abs(ours["mssd"] - hausdorff) <= 0.05
    assert 0 < ours["assd"] < ours["mssd"]


def test_masks_touching_the_array_border_agree_with_monai() -> None:
    spacing = (2.5, 0.5, 0.8)
    truth = np.zeros((10, 12, 14), dtype=bool)
    truth[:, 3:9, 4:12] = True  # spans the whole first axis: its end faces are on the border
    prediction = np.zeros_like(truth)
    prediction[2:, 2:9, 0:10] = True
    ours = mask_metrics(prediction, truth, spacing)
    dice, assd, hausdorff = _monai(prediction, truth, spacing)
    assert ours["dice"] == pytest.approx(dice, abs=1e-6)
    assert ours["assd"] == pytest.approx(assd, abs=0.05)
    assert ours["mssd"] == pytest.approx(hausdorff, abs=0.05)


def test_hand_computed_values_with_anisotropic_spacing() -> None:
    spacing = (3.0, 1.0, 0.5)
    truth = np.zeros((12, 12, 12), dtype=bool)
    truth[3:7, 3:7, 3:7] = True  # 64 voxels
    prediction = np.roll(truth, 1, axis=0)  # shifted by one slice: 3 mm
    result = mask_metrics(prediction, truth, spacing)
    assert result["dice"] == pytest.approx(2 * 48 / 128)
    assert result["sensitivity"] == pytest.approx(48 / 64)
    assert result["specificity"] == pytest.approx((12**3 - 64 - 16) / (12**3 - 64))
    assert result["ravd"] == 0.0
    assert result["mssd"] == pytest.approx(3.0)  # the leading face of one cube is 3 mm from the other's surface
    assert 0 < result["assd"] < 3.0
    # a larger prediction: RAVD is the relative volume excess
    grown = truth.copy()
    grown[7, 3:7, 3:7] = True
    assert mask_metrics(grown, truth, spacing)["ravd"] == pytest.approx(16 / 64)
    identical = mask_metrics(truth, truth, spacing)
    assert identical == {"dice": 1.0, "sensitivity": 1.0, "specificity": 1.0, "ravd": 0.0, "assd": 0.0, "mssd": 0.0}


def test_surface_is_the_face_connected_boundary() -> None:
    cube = np.zeros((7, 7, 7), dtype=bool)
    cube[1:6, 1:6, 1:6] = True
    surface = surface_voxels(cube)
    assert surface.sum() == 5**3 - 3**3
    assert not surface[3, 3, 3] and surface[1, 3, 3]
    full = np.ones((4, 4, 4), dtype=bool)  # the array border is background: all outer voxels are surface
    assert surface_voxels(full).sum() == 4**3 - 2**3


def test_empty_mask_conventions() -> None:
    spacing = (1.0, 1.0, 2.0)
    empty = np.zeros((6, 6, 6), dtype=bool)
    some = empty.copy()
    some[2:4, 2:4, 2:4] = True
    both = mask_metrics(empty, empty, spacing)
    assert both == {"dice": 1.0, "sensitivity": 1.0, "specificity": 1.0, "ravd": 0.0, "assd": 0.0, "mssd": 0.0}
    missed = mask_metrics(empty, some, spacing)
    assert missed["dice"] == 0.0 and missed["sensitivity"] == 0.0 and missed["ravd"] == 1.0
    assert math.isinf(missed["assd"]) and math.isinf(missed["mssd"])
    hallucinated = mask_metrics(some, empty, spacing)
    assert hallucinated["dice"] == 0.0 and math.isnan(hallucinated["sensitivity"])
    assert math.isinf(hallucinated["ravd"]) and math.isinf(hallucinated["mssd"])
    assert hallucinated["specificity"] == pytest.approx(1 - 8 / 216)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        mask_metrics(np.zeros((3, 3, 3), bool), np.zeros((3, 3, 4), bool), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        mask_metrics(np.ones((3, 3, 3), bool), np.ones((3, 3, 3), bool), (1, 1))
    with pytest.raises(ValueError, match="spacing"):
        mask_metrics(np.ones((3, 3, 3), bool), np.ones((3, 3, 3), bool), (1, 0, 1))


def _knee_labels(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    knee = get_joint("knee")
    labels = np.zeros(shape, dtype=np.uint8)
    for bone in knee.bones:
        labels[_blob(rng, shape, 2.0, 0.08) & (labels == 0)] = knee.label_of(bone.key)
    return labels


def test_label_metrics_per_bone_and_images_use_their_spacing() -> None:
    rng = np.random.default_rng(3)
    truth = _knee_labels(rng, (12, 20, 18))
    prediction = truth.copy()
    patella = get_joint("knee").label_of("patella")
    prediction[prediction == patella] = 0  # the patella is missed, the other bones are perfect
    per_bone = label_metrics(prediction, truth, (2.0, 0.5, 0.5), "knee")
    assert list(per_bone) == [bone.key for bone in get_joint("knee").bones]
    assert set(per_bone["femur"]) == set(METRIC_KEYS)
    assert per_bone["femur"]["dice"] == 1.0 and per_bone["fibula"]["mssd"] == 0.0
    assert per_bone["patella"]["dice"] == 0.0 and math.isinf(per_bone["patella"]["assd"])

    shifted = np.roll(truth, 1, axis=0)  # one slice along numpy axis 0 = SimpleITK's z
    images = [sitk.GetImageFromArray(array) for array in (shifted, truth)]
    for image in images:
        image.SetSpacing((0.5, 0.5, 2.0))  # (x, y, z)
    from_images = image_metrics(images[0], images[1], "knee")
    from_arrays = label_metrics(shifted, truth, (2.0, 0.5, 0.5), "knee")
    assert from_images == from_arrays
    assert from_images["femur"]["mssd"] >= 2.0  # a one-slice shift is at least one z spacing

    images[0].SetOrigin((0.0, 0.0, 5.0))
    with pytest.raises(ValueError, match="origin"):
        image_metrics(images[0], images[1], "knee")
