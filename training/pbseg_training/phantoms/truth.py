"""Ground truth of the clinical measurements of a generator-2.0 phantom, in patient LPS mm.

The builders name analytic landmarks in each bone's own frame (``JointModel.landmarks``); they are
carried where the render draws them (the render's warps and flexion inverted, then the scanner
grid) and the light library's own measure functions (``PediatricBoneSegLib.pipeline.measurements``)
turn them into values, so truth and measurement share one definition. Growth-plate truths come
from the analytic bone and plate fields (sampled at 1 adult mm, warps neglected: a few % of area
and volume); the ankle's principal axes from its bones sampled at 1.5 adult mm. The truth adds
about 0.2-0.35 s to a phantom."""

from __future__ import annotations

from typing import Any

import numpy as np

from PediatricBoneSegLib.pipeline.measurements import NotMeasurable, ankle, knee, physis, shoulder
from PediatricBoneSegLib.pipeline.measurements.geometry import plane_normal

from .anatomy import JointModel
from .deformation import SmoothWarp
from .scanner import ScannerGrid


def to_patient(model: JointModel, grid: ScannerGrid, variation: Any, bone: int, points: np.ndarray) -> np.ndarray:
    """(N, 3) points of bone ``bone``'s own frame (where its signed-distance function is
    evaluated) -> LPS mm where the render draws them: the render's chain (limb warp, flexion of a
    distal bone, the bone's warp) inverted, then the grid's mapping. ``variation``: the case's
    ``generator._Variation``."""
    a = np.asarray(points, np.float64)
    a = _inverse_warp(variation.bones[bone], a)
    if variation.hinge.is_distal(model.bones[bone].bounds):
        a = np.stack(variation.hinge.rotate(tuple(a.T), -variation.flexion), axis=1)
    a = _inverse_warp(variation.limb, a)
    index = np.linalg.solve(grid.to_adult, (a - grid.offset).T).T  # (i, j, k)
    return np.asarray(grid.origin) + (index * np.asarray(grid.spacing)) @ grid.direction.T


def _inverse_warp(warp: SmoothWarp, target: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Points c with warp(c) = target (fixed point: the warps' slopes are well under 1)."""
    c = target.copy()
    for _ in range(iterations):
        moved = np.stack(warp(tuple(c.T)), axis=1)
        c = target - (moved - c)
    return c


def ground_truth(joint: str, model: JointModel, grid: ScannerGrid, variation: Any) -> dict:
    """``{"measurements": {key: value}, "landmarks_lps_mm": {...}, "physes": {bone: {...}}}``."""
    mapped = {
        name: to_patient(model, grid, variation, bone, points) for name, (bone, points) in model.landmarks.items()
    }
    points = _LANDMARKS[joint](mapped, model, grid, variation)
    values = _VALUES[joint](points)
    return {
        "measurements": {key: round(float(value), 3) for key, value in values.items()},
        "landmarks_lps_mm": {
            name: np.round(np.asarray(value, float), 3).tolist() for name, value in points.items() if name != "axes"
        },
        "physes": _physes(model, grid),
    }


def _shoulder(mapped: dict, model: JointModel, grid: ScannerGrid, variation: Any) -> dict:
    face, head = mapped["glenoid_face"], mapped["head"]
    normal = plane_normal(face[1:])
    normal = normal if normal @ (head[0] - face[0]) > 0 else -normal
    return {
        "glenoid_center": face[0],
        "glenoid_normal": normal,
        "blade_normal": plane_normal(mapped["blade"]),
        "head_center": head[0],
        "head_radius": np.float64(np.linalg.norm(head[1:] - head[0], axis=1).mean()),
    }


def _knee(mapped: dict, model: JointModel, grid: ScannerGrid, variation: Any, step: float = 0.02) -> dict:
    """The builder's landmarks, but the trochlea read off the femur as rendered: the anterior
    envelope of the analytic femur's section through the trochlea's centre (sampled every ``step``
    adult mm, so the facets' blending into the rest of the bone counts), carried where the render
    draws it (the warps bend a few-mm-high facet as much as its slope), and read in the patient's
    axial plane by the measure's own ``knee.facets_from_profile``."""
    out = dict(mapped)
    bone, planned = model.landmarks["trochlea"]
    groove = planned[0]
    columns = np.arange(planned[:, 0].min() - 8.0, planned[:, 0].max() + 8.0, 0.1)
    depths = np.arange(groove[1] - 12.0, groove[1] + 6.0, step)
    x, y = np.meshgrid(columns, depths, indexing="ij")
    inside = model.bones[bone].sdf((x, y, np.full_like(x, groove[2]))) < 0  # bone frame: -y anterior
    if not inside.any(axis=1).all():
        raise ValueError("the trochlear section leaves the femur")
    front = depths[np.argmax(inside, axis=1)]  # each column's most anterior bone point
    envelope = to_patient(
        model, grid, variation, bone, np.column_stack([columns, front, np.full_like(columns, groove[2])])
    )
    medial, anterior = knee.frame(mapped["posterior_condyles"])
    along, height = envelope @ medial, envelope @ anterior
    order = np.argsort(along)
    positions = np.arange(along.min(), along.max(), knee.PROFILE_STEP_MM)
    profile = np.interp(positions, along[order], height[order])
    try:  # a noise-free envelope: any rise is a facet
        points = knee.facets_from_profile(positions, profile, 5.0 * grid.scale, prominence_mm=0.01)
    except NotMeasurable:  # too flat to read (a dysplastic trochlea of a small child): as planned
        return out
    out["trochlea"] = knee.on_section(envelope.mean(0), medial, anterior, points)
    return out


def _ankle(mapped: dict, model: JointModel, grid: ScannerGrid, variation: Any, step: float = 1.5) -> dict:
    """Principal axes and dome of the analytic talus and calcaneus, sampled inside and mapped."""
    interiors = []
    for key in ("talus", "calcaneus"):
        index = next(i for i, bone in enumerate(model.bones) if bone.key == key)
        bone = model.bones[index]
        axes = [np.arange(bone.bounds[0][a], bone.bounds[1][a], step, dtype=np.float32) for a in range(3)]
        grid_points = np.meshgrid(*axes, indexing="ij")
        inside = bone.sdf(tuple(grid_points)) < 0
        points = np.stack([g[inside] for g in grid_points], axis=1)
        interiors.append(to_patient(model, grid, variation, index, points))
    return ankle.landmarks_from_points(*interiors, pad=0.5 * step * grid.scale)


def _physes(model: JointModel, grid: ScannerGrid, step: float = 1.0) -> dict:
    """Per labeled long bone: whether its growth plate is open, its area (real mm², one face)
    and the epiphysis volume (ml); area and volume None when the plate is closed."""
    out = {}
    s = grid.scale
    for bone in model.bones:
        if bone.key not in physis.LONG_BONES or not bone.physes:
            continue
        plate = bone.physes[0]
        low = np.maximum(np.asarray(bone.bounds[0], float), -100.0)  # the plates lie within 60 mm of
        high = np.minimum(np.asarray(bone.bounds[1], float), 100.0)  # the joint's origin
        axes = [np.arange(low[a], high[a], step, dtype=np.float32) for a in range(3)]
        p = np.meshgrid(*axes, indexing="ij", sparse=True)
        inside = bone.sdf(p) < 0
        side = plate.side(p) * np.float32(s)  # real mm, negative on the epiphysis side
        entry: dict[str, Any] = {"open": bool(plate.open), "physeal_area_mm2": None, "epiphysis_volume_ml": None}
        if plate.open:
            real_voxel = step**3 * s**3
            plate_voxels = int((inside & (np.abs(side) < plate.thickness / 2)).sum())
            entry["physeal_area_mm2"] = round(plate_voxels * real_voxel / plate.thickness, 1)
            entry["epiphysis_volume_ml"] = round(
                int((inside & (side < -plate.thickness / 2)).sum()) * real_voxel / 1e3, 3
            )
        out[bone.key] = entry
    return out


_LANDMARKS = {"shoulder": _shoulder, "knee": _knee, "ankle": _ankle}
_VALUES = {"shoulder": shoulder.values, "knee": knee.values, "ankle": ankle.values}
