"""Shoulder: glenoid version and inclination, PHHA and humeral head diameter, in the scapular frame.

Scapular frame: the blade plane (robust plane through the scapula away from the glenoid); its
superior axis is the patient's head-foot axis projected on it; the scapular axis (Friedman's line)
is the blade-plane direction perpendicular to that, pointing lateral (towards the humeral head).
The glenoid face is the plane (RANSAC) of the scapular surface next to the humeral head that faces
it; the
head is a robust sphere fit of the humeral surface next to the glenoid.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .base import ANTERIOR, SUPERIOR, Definition, NotMeasurable, project, unit
from .geometry import LabelVolume, fit_plane, fit_sphere

_REF_FRIEDMAN = "Friedman RJ et al., J Bone Joint Surg Am 1992;74:1032-7 (3D: in the scapular plane)"
_REF_WATERS = "Waters PM et al., J Bone Joint Surg Am 1998;80:668-77"
_ALL = ("glenoid_center", "glenoid_normal", "blade_normal", "head_center", "head_radius")

DEFINITIONS = (
    Definition(
        "glenoid_version",
        "shoulder",
        "Glenoid version",
        "deg",
        "Angle, in the scapular transverse plane, between the glenoid face normal and the lateral scapular "
        "axis (Friedman: glenoid line vs the perpendicular to the scapular axis); negative = retroversion.",
        _REF_FRIEDMAN,
        ("scapula", "humerus"),
        needs=_ALL,
        plane="axial",
    ),
    Definition(
        "glenoid_inclination",
        "shoulder",
        "Glenoid inclination",
        "deg",
        "Angle of the glenoid face normal above the scapular transverse plane (the patient's head-foot axis "
        "projected on the blade gives superior); positive = superior tilt.",
        "Churchill RS et al., J Shoulder Elbow Surg 2001;10:327-32",
        ("scapula", "humerus"),
        needs=_ALL,
        plane="coronal",
    ),
    Definition(
        "phha",
        "shoulder",
        "Percentage of humeral head anterior (PHHA)",
        "%",
        "Share of the humeral head diameter anterior to the scapular line (glenoid centre along the scapular "
        "axis), in the scapular transverse plane through the head centre; 50 % = centred, lower = posterior "
        "subluxation.",
        _REF_WATERS,
        ("scapula", "humerus"),
        needs=_ALL,
        plane="axial",
    ),
    Definition(
        "humeral_head_diameter",
        "shoulder",
        "Humeral head diameter",
        "mm",
        "Diameter of the sphere best fitting (RANSAC) the ossified humeral head surface next to the glenoid.",
        "Kwon YW et al., J Shoulder Elbow Surg 2005;14:85-90 (sphere fit)",
        ("humerus",),
        needs=("head_center", "head_radius"),
        plane="axial",
    ),
)


def values(landmarks: dict[str, np.ndarray]) -> dict[str, float]:
    """Measures from the landmarks (LPS): ``glenoid_center``, ``glenoid_normal`` (towards the
    head), ``blade_normal``, ``head_center`` and ``head_radius`` (mm). Version, inclination and
    PHHA are their ``POINT_FUNCTIONS`` entries on the lines ``display`` places (the one formula
    the pipeline, the generator's ground truth and the Slicer Markups share); the head diameter
    is the sphere fit's."""
    shown = display(landmarks)
    out = {key: function(shown[key]) for key, function in POINT_FUNCTIONS.items() if key in shown}
    out["humeral_head_diameter"] = 2.0 * float(landmarks["head_radius"])
    return out


def glenoid_version(points: dict[str, np.ndarray]) -> float:
    """From the "scapular axis" (medial point -> glenoid centre: lateral) and the "glenoid line"
    (the face's trace): the scapular transverse plane is the plane of the two lines (superior
    towards the patient's head), the face normal in it is perpendicular to the glenoid line,
    lateral; the angle from the lateral axis to that normal, positive anterior (Friedman). Superior
    and anterior take their signs from the patient's axes, as in ``scapular_frame``."""
    start, end = points["scapular axis"]
    lateral = unit(end - start)
    face = points["glenoid line"][1] - points["glenoid line"][0]
    superior = unit(np.cross(face, lateral))
    superior = superior if superior @ SUPERIOR > 0 else -superior
    anterior = np.cross(lateral, superior)  # the blade normal; its sign from the patient's axes, as
    anterior = anterior if anterior @ ANTERIOR > 0 else -anterior  # left and right differ in handedness
    normal = np.cross(superior, face)
    normal = normal if normal @ lateral > 0 else -normal
    return float(np.degrees(np.arctan2(normal @ anterior, normal @ lateral)))


def glenoid_inclination(points: dict[str, np.ndarray]) -> float:
    """From the "glenoid axis" (centre -> along the face normal) and the "superior scapular axis"
    (centre -> superior in the blade plane): the axis' elevation above the transverse plane."""
    normal = unit(np.diff(points["glenoid axis"], axis=0)[0])
    superior = unit(np.diff(points["superior scapular axis"], axis=0)[0])
    return float(np.degrees(np.arcsin(np.clip(normal @ superior, -1.0, 1.0))))


def phha(points: dict[str, np.ndarray]) -> float:
    """From the "scapular line" (glenoid centre -> lateral) and the humeral "head diameter"
    (posterior -> anterior end): the share of the diameter anterior to where the scapular line
    crosses it (the closest points of the two lines), percent."""
    start, end = points["scapular line"]
    back, front = points["head diameter"]
    centre, radius = (back + front) / 2.0, float(np.linalg.norm(front - back)) / 2.0
    anterior = unit(front - back)
    anterior = anterior if anterior @ ANTERIOR > 0 else -anterior
    lines = np.column_stack([unit(end - start), -anterior])
    (_, offset), _, rank, _ = np.linalg.lstsq(lines, centre - start, rcond=None)
    if rank < 2:
        raise NotMeasurable("degenerate geometry (scapular line along the head diameter)")
    return 50.0 - 50.0 * float(offset) / radius  # the line crosses ``offset`` mm anterior of the centre


POINT_FUNCTIONS = {  # measure -> its value from its shown points (``display``) alone
    "glenoid_version": glenoid_version,
    "glenoid_inclination": glenoid_inclination,
    "phha": phha,
}


def scapular_frame(blade_normal: np.ndarray, towards_head: np.ndarray) -> np.ndarray:
    """Rows: lateral scapular axis, anterior (blade normal), superior (in the blade plane)."""
    normal = unit(blade_normal)
    anterior = normal if normal @ ANTERIOR > 0 else -normal
    superior = unit(project(SUPERIOR, anterior))
    lateral = np.cross(superior, anterior)
    lateral = lateral if lateral @ towards_head > 0 else -lateral
    return np.stack([lateral, anterior, superior])


def landmarks(volume: LabelVolume) -> dict[str, np.ndarray]:
    """The landmarks of ``values`` from a label map (raises ``NotMeasurable``)."""
    humerus, scapula = volume.bone("humerus"), volume.bone("scapula")
    h_points, _ = humerus.smooth_surface
    s_points, _ = scapula.smooth_surface
    tolerance = 0.25 * float(volume.spacing.max()) + 0.5
    sparse = h_points[::4]  # a seed for the head region only: every 4th point is plenty, 16x faster
    nearest, _ = cKDTree(s_points[::4]).query(sparse)
    closest = sparse[np.argmin(nearest)]
    near = h_points[np.linalg.norm(h_points - closest, axis=1) < 45.0]
    head, radius, _ = fit_sphere(near, tolerance)
    if volume.near_border(head[None], radius):
        raise NotMeasurable("humeral head cut by the field of view")
    blade = scapula.points[np.linalg.norm(scapula.points - head, axis=1) > 2.2 * radius]
    blade_point, blade_normal = fit_plane(blade, max(2.0, tolerance + 1.0))
    lateral, anterior, superior = scapular_frame(blade_normal, head - blade.mean(0))
    distance = np.linalg.norm(s_points - head, axis=1)
    window = distance < float(distance.min()) + 0.45 * radius  # the flat face is what the head looks at
    window &= np.abs((s_points - blade_point) @ blade_normal) < 0.8 * radius  # the glenoid sits on the blade
    # The face: a plane next to the head, near the blade plane, facing roughly along the scapular
    # axis (not the acromion's underside nor the coracoid, which lie off the blade and face away).
    center, normal = fit_plane(
        s_points[window], tolerance, valid=lambda point, normal: _glenoid_like(normal, lateral, superior)
    )
    towards = normal if normal @ (head - center) > 0 else -normal
    return {
        "glenoid_center": center,
        "glenoid_normal": _checked_face(volume, towards, anterior, superior),
        "blade_normal": blade_normal,
        "head_center": head,
        "head_radius": np.float64(radius),
    }


def _checked_face(volume: LabelVolume, normal: np.ndarray, anterior: np.ndarray, superior: np.ndarray):
    """``normal``, or why it cannot be trusted: the refit face does not face along the scapular
    axis as a glenoid does, or the voxels are too coarse across the scapular transverse plane
    (``LabelVolume.too_coarse``: the slices of a 2D coronal or sagittal series), where the face's
    version lies and where thick slices' terraces look like faces too."""
    lateral = np.cross(superior, anterior)
    if not _glenoid_like(normal, lateral, superior):
        return NotMeasurable("no glenoid-like face on the scapula next to the humeral head")
    axes = {"front to back": anterior, "medial to lateral": lateral}
    return volume.too_coarse(axes, "the glenoid's version") or normal


def _glenoid_like(normal: np.ndarray, lateral: np.ndarray, superior: np.ndarray) -> bool:
    """A plane a glenoid can have: within 60 deg of the scapular axis, tilted less than 40 deg."""
    return abs(normal @ lateral) > np.cos(np.radians(60.0)) and abs(normal @ superior) < np.sin(np.radians(40.0))


def display(points: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Landmarks to show per measure, lines (two points) in LPS: what ``POINT_FUNCTIONS`` read
    (the head diameter alone when the glenoid face could not be read)."""
    f, head, radius = points["glenoid_center"], points["head_center"], float(points["head_radius"])
    lateral, anterior, superior = scapular_frame(points["blade_normal"], head - f)
    diameter = {"head diameter": np.stack([head - radius * anterior, head + radius * anterior])}
    if "glenoid_normal" not in points:
        return {"humeral_head_diameter": diameter}
    n = unit(points["glenoid_normal"])
    face = np.cross(n, np.cross(anterior, lateral))
    return {
        "glenoid_version": {
            "scapular axis": np.stack([f - 2 * radius * lateral, f]),
            "glenoid line": np.stack([f - 0.6 * radius * face, f + 0.6 * radius * face]),
        },
        "glenoid_inclination": {
            "glenoid axis": np.stack([f, f + radius * n]),
            "superior scapular axis": np.stack([f, f + radius * superior]),
        },
        "phha": {
            "scapular line": np.stack([f, f + 2 * radius * lateral]),
            "head diameter": np.stack([head - radius * anterior, head + radius * anterior]),
        },
        "humeral_head_diameter": diameter,
    }
