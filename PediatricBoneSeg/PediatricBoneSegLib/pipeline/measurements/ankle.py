"""Ankle: talocalcaneal angles in the sagittal and axial planes, talar dome width.

Each bone's long axis is its first principal axis (the inertia frame of its voxels), oriented
forwards; the angles are between the two axes projected on the patient's sagittal and axial
planes, as on lateral and dorsoplantar radiographs. The talar dome is the top of the talus.
"""

from __future__ import annotations

import numpy as np

from .base import ANTERIOR, SUPERIOR, Definition, angle_deg, points_by_measure, project, unit
from .geometry import LabelVolume, principal_axes

_REF = "Vanderwilde R et al., J Bone Joint Surg Am 1988;70:407-15 (talocalcaneal angles in children)"
_LEFT = np.array([1.0, 0.0, 0.0])  # LPS +x: the normal of the sagittal plane
_DOME_SHARE = 0.15  # top share of the talus height read as the dome

DEFINITIONS = (
    Definition(
        "talocalcaneal_angle_sagittal",
        "ankle",
        "Talocalcaneal angle (sagittal)",
        "deg",
        "Angle between the talar and calcaneal long (first principal) axes projected on the sagittal plane "
        "(lateral view; children ~25-50 deg).",
        _REF,
        ("talus", "calcaneus"),
        ("talus", "calcaneus"),
        needs=("talar_axis", "calcaneal_axis"),
        plane="sagittal",
    ),
    Definition(
        "talocalcaneal_angle_axial",
        "ankle",
        "Talocalcaneal angle (axial)",
        "deg",
        "Angle between the talar and calcaneal long axes projected on the axial plane (dorsoplantar view; "
        "children ~20-50 deg).",
        _REF,
        ("talus", "calcaneus"),
        ("talus", "calcaneus"),
        needs=("talar_axis", "calcaneal_axis"),
        plane="axial",
    ),
    Definition(
        "talar_dome_width",
        "ankle",
        "Talar dome width",
        "mm",
        "Mediolateral width of the talar dome (the top 15 % of the talus), perpendicular to the talar axis "
        "in the axial plane.",
        "Hayes A et al., Foot Ankle Int 2006;27:1099 (talar dimensions)",
        ("talus",),
        ("talus",),
        needs=("talar_axis", "dome"),
        plane="coronal",
    ),
)


def long_axis(points: np.ndarray) -> np.ndarray:
    """First principal axis of (N, 3) points, pointing forwards."""
    first = principal_axes(points)[0]
    return first if first @ ANTERIOR > 0 else -first


def landmarks_from_points(talus: np.ndarray, calcaneus: np.ndarray | None, pad: float) -> dict[str, np.ndarray]:
    """Axes (two points each) and dome ends from the bones' interior points (LPS); ``pad``: half
    a sample's extent added to each end of the width; no calcaneal axis without a calcaneus."""
    talar = long_axis(talus)
    width_axis = unit(np.cross(SUPERIOR, talar))
    height = talus @ SUPERIOR
    dome = talus[height > height.max() - _DOME_SHARE * np.ptp(height)]
    along = dome @ width_axis
    ends = np.stack([dome[np.argmin(along)] - pad * width_axis, dome[np.argmax(along)] + pad * width_axis])
    out = {"talar_axis": np.stack([talus.mean(0), talus.mean(0) + 20.0 * talar]), "dome": ends}
    if calcaneus is not None:
        out["calcaneal_axis"] = np.stack([calcaneus.mean(0), calcaneus.mean(0) + 20.0 * long_axis(calcaneus)])
    return out


def display(landmarks: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per measure whose landmarks are present, the points shown and read by its point function."""
    return points_by_measure(DEFINITIONS, landmarks)


def _axis(points: dict[str, np.ndarray], name: str) -> np.ndarray:
    return np.diff(points[name], axis=0)[0]


def talar_dome_width(points: dict[str, np.ndarray]) -> float:
    width_axis = unit(np.cross(SUPERIOR, _axis(points, "talar_axis")))
    return float(abs(np.diff(points["dome"] @ width_axis)[0]))


def talocalcaneal_angle_sagittal(points: dict[str, np.ndarray]) -> float:
    return angle_deg(project(_axis(points, "talar_axis"), _LEFT), project(_axis(points, "calcaneal_axis"), _LEFT))


def talocalcaneal_angle_axial(points: dict[str, np.ndarray]) -> float:
    talar, calcaneal = _axis(points, "talar_axis"), _axis(points, "calcaneal_axis")
    return angle_deg(project(talar, SUPERIOR), project(calcaneal, SUPERIOR))


POINT_FUNCTIONS = {  # measure -> its value from its shown points (``display``) alone
    "talar_dome_width": talar_dome_width,
    "talocalcaneal_angle_sagittal": talocalcaneal_angle_sagittal,
    "talocalcaneal_angle_axial": talocalcaneal_angle_axial,
}


def values(landmarks: dict[str, np.ndarray]) -> dict[str, float]:
    """Measures from the landmarks of ``landmarks_from_points``: each its ``POINT_FUNCTIONS``
    entry on its ``display`` points (the generator's truth and the Slicer Markups use the same)."""
    shown = display(landmarks)
    return {key: function(shown[key]) for key, function in POINT_FUNCTIONS.items() if key in shown}


def landmarks(volume: LabelVolume) -> dict[str, np.ndarray]:
    """The landmarks of ``values`` from a label map (raises ``NotMeasurable``)."""
    talus = volume.bone("talus").points
    calcaneus = volume.bone("calcaneus").points if volume.has("calcaneus") else None
    talar = long_axis(talus)
    width_axis = unit(np.cross(SUPERIOR, talar))
    pad = 0.5 * float(np.abs(volume.direction.T @ width_axis) @ volume.spacing)
    return landmarks_from_points(talus, calcaneus, pad)
