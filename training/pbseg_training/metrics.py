"""Per-bone 3D segmentation metrics in millimetres: Dice, sensitivity, specificity, RAVD, ASSD, MSSD.

Conventions (they match MONAI's ``compute_dice``, ``compute_average_surface_distance(symmetric=True)``
and ``compute_hausdorff_distance``, which the tests check):

- the *surface* of a mask is its boundary voxels: the voxels of the mask that a 6-connected
  (face-neighbour) erosion removes; voxels on the border of the array count as boundary;
- a surface distance is the Euclidean distance, in mm (``spacing``), from the centre of a surface
  voxel of one mask to the centre of the nearest surface voxel of the other;
- ASSD is the mean over the distances of BOTH directions pooled (not the mean of the two means);
  MSSD (maximum symmetric surface distance, the Hausdorff distance) is the largest of them.

Empty masks: both empty -> Dice 1, sensitivity 1, RAVD 0, ASSD 0, MSSD 0 (nothing to find, nothing
found); truth empty, prediction not -> Dice 0, sensitivity NaN (undefined), RAVD, ASSD and MSSD
inf; prediction empty, truth not -> Dice 0, sensitivity 0, RAVD 1, ASSD and MSSD inf. Specificity
is NaN only when the truth covers the whole array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from PediatricBoneSegLib.catalog import get_joint


@dataclass(frozen=True)
class Metric:
    """How a metric is reported: ``scale`` turns the stored value into ``unit``."""

    key: str
    title: str
    unit: str
    scale: float
    higher_is_better: bool


METRICS: tuple[Metric, ...] = (
    Metric("dice", "Dice", "%", 100.0, True),
    Metric("sensitivity", "Sensitivity", "%", 100.0, True),
    Metric("specificity", "Specificity", "%", 100.0, True),
    Metric("ravd", "RAVD", "%", 100.0, False),
    Metric("assd", "ASSD", "mm", 1.0, False),
    Metric("mssd", "MSSD", "mm", 1.0, False),
)
METRIC_KEYS: tuple[str, ...] = tuple(metric.key for metric in METRICS)


def get_metric(key: str) -> Metric:
    for metric in METRICS:
        if metric.key == key:
            return metric
    raise ValueError(f"unknown metric {key!r}; known metrics: {', '.join(METRIC_KEYS)}")


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a boolean mask (same shape): removed by a face-connected erosion that
    treats everything outside the array as background."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim or min(spacing) <= 0:
        raise ValueError(f"spacing {spacing} must give {ndim} positive values (mm, in array axis order)")
    return spacing


def surface_distances(
    prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm (1-D arrays): from each surface voxel of ``prediction`` to the surface of
    ``truth``, and back. Both masks must be non-empty. ``spacing``: mm per voxel, in array axis order."""
    if not prediction.any() or not truth.any():
        raise ValueError("surface distances need two non-empty masks")
    spacing = _check_spacing(spacing, prediction.ndim)
    # Crop to the union's bounding box: every surface voxel lies inside, so distances are unchanged.
    box = ndimage.find_objects((prediction | truth).astype(np.uint8))[0]
    surfaces = surface_voxels(prediction)[box], surface_voxels(truth)[box]
    back = []
    for source, target in (surfaces, surfaces[::-1]):
        distance_to_target = ndimage.distance_transform_edt(~target, sampling=spacing)
        back.append(distance_to_target[source])
    return back[0], back[1]


def mask_metrics(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """All metrics of one binary prediction against one binary truth (same shape, any dimension).
    Dice, sensitivity, specificity and RAVD are fractions; ASSD and MSSD are in mm."""
    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from truth shape {truth.shape}")
    spacing = _check_spacing(spacing, truth.ndim)
    true_positive = float(np.count_nonzero(prediction & truth))
    predicted, actual = float(np.count_nonzero(prediction)), float(np.count_nonzero(truth))
    negatives = truth.size - actual
    false_positive = predicted - true_positive
    result = {
        "specificity": (negatives - false_positive) / negatives if negatives else float("nan"),
    }
    if actual == 0 and predicted == 0:
        return {"dice": 1.0, "sensitivity": 1.0, **result, "ravd": 0.0, "assd": 0.0, "mssd": 0.0}
    result["dice"] = 2 * true_positive / (predicted + actual)
    result["sensitivity"] = true_positive / actual if actual else float("nan")
    result["ravd"] = abs(predicted - actual) / actual if actual else float("inf")
    if actual == 0 or predicted == 0:
        result["assd"] = result["mssd"] = float("inf")
    else:
        forward, backward = surface_distances(prediction, truth, spacing)
        pooled = np.concatenate([forward, backward])
        result["assd"], result["mssd"] = float(pooled.mean()), float(pooled.max())
    return {key: result[key] for key in METRIC_KEYS}


def label_metrics(
    prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float], joint: str
) -> dict[str, dict[str, float]]:
    """Per bone of ``joint`` (catalog order): ``{bone key: {metric: value}}`` for two label volumes
    with the joint's label values. ``spacing``: mm per voxel, in array axis order."""
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from truth shape {truth.shape}")
    catalog_joint = get_joint(joint)
    labels = {bone.key: catalog_joint.label_of(bone.key) for bone in catalog_joint.bones}
    return {bone: mask_metrics(prediction == label, truth == label, spacing) for bone, label in labels.items()}


def image_metrics(prediction: sitk.Image, truth: sitk.Image, joint: str) -> dict[str, dict[str, float]]:
    """``label_metrics`` of two label images, which must share their grid (size, spacing, origin,
    direction); the spacing comes from the images."""
    for name, getter in (
        ("size", "GetSize"),
        ("spacing", "GetSpacing"),
        ("origin", "GetOrigin"),
        ("direction", "GetDirection"),
    ):
        a, b = getattr(prediction, getter)(), getattr(truth, getter)()
        if not np.allclose(a, b, atol=1e-4):
            raise ValueError(f"prediction and truth differ in {name}: {a} vs {b}")
    spacing = tuple(reversed(truth.GetSpacing()))  # SimpleITK (x, y, z) -> numpy (z, y, x)
    return label_metrics(sitk.GetArrayViewFromImage(prediction), sitk.GetArrayViewFromImage(truth), spacing, joint)
