"""Clinical measurements of a segmented joint: pure functions of the label volume (spacing and
direction included) and the per-bone quality verdict; no network.

``measure(labels, joint, quality)`` returns one ``Measurement`` per measure of the joint and per
growth-plate measure of each of its long bones; each is a value with its landmarks or "not
measurable" with the reason (bone missing, cut by the field of view, unreliable segmentation,
landmark not found). One file per joint (shoulder, knee, ankle) and one for the growth plates;
each joint module has ``DEFINITIONS``, ``landmarks(volume)``, ``display(landmarks)`` (the points
shown per measure) and ``values(landmarks)``, the latter shared with the phantom generator's ground
truth.

A measure that is a function of its shown points alone (angles between lines, distances, PHHA) has
that function in its joint module's ``POINT_FUNCTIONS``; ``values`` computes it from ``display``'s
points, and ``remeasure`` from points a reader moved (the Slicer Markups): one formula. Sphere
fits, volumes and growth plates are not functions of their points (``point_function`` is None).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import SimpleITK as sitk

from ...catalog import get_joint
from . import ankle, knee, physis, shoulder
from .base import Definition, Measurement, NotMeasurable
from .geometry import LabelVolume

JOINT_MODULES: dict[str, ModuleType] = {"shoulder": shoulder, "knee": knee, "ankle": ankle}

__all__ = [
    "JOINT_MODULES",
    "Definition",
    "Measurement",
    "NotMeasurable",
    "definitions",
    "measure",
    "point_function",
    "remeasure",
]


def definitions(joint: str) -> tuple[Definition, ...]:
    """The joint's measures followed by the growth-plate measures (per long bone)."""
    return JOINT_MODULES[get_joint(joint).key].DEFINITIONS + physis.DEFINITIONS


def point_function(definition: Definition) -> Callable[[dict[str, np.ndarray]], float] | None:
    """The function giving ``definition``'s value from its shown landmark points alone (name ->
    (N, 3) LPS mm, as in ``Measurement.landmarks``), or None for a measure that is not one (a sphere
    fit, a volume, a growth plate: its landmarks are for display only)."""
    if definition.joint is None:
        return None
    return JOINT_MODULES[definition.joint].POINT_FUNCTIONS.get(definition.key)


def remeasure(measurement: Measurement, points: dict[str, np.ndarray]) -> Measurement:
    """``measurement`` recomputed from moved landmark points (its landmark names, the same number
    of points each, LPS mm) by the measure's point function: the value the pipeline gives for
    those points, or not measurable with the reason (a point missing, degenerate geometry).
    ValueError for a measure that is not a function of its points."""
    function = point_function(measurement.definition)
    if function is None:
        raise ValueError(f"{measurement.key} is not a function of its landmark points")
    none = np.empty((0, 3))
    moved = {name: np.atleast_2d(np.asarray(points.get(name, none), float)) for name in measurement.landmarks}
    for name, original in measurement.landmarks.items():
        if moved[name].shape != np.shape(original):
            return Measurement(
                measurement.definition,
                None,
                f"{name} needs {len(original)} point(s), has {len(moved[name])}",
                moved,
                measurement.bone,
            )
    try:
        value = float(function(moved))
    except NotMeasurable as error:
        return Measurement(measurement.definition, None, str(error), moved, measurement.bone)
    if not np.isfinite(value):
        return Measurement(measurement.definition, None, "degenerate geometry", moved, measurement.bone)
    return Measurement(measurement.definition, value, landmarks=moved, bone=measurement.bone)


def measure(
    labels: sitk.Image,
    joint: str,
    quality: dict | None = None,
    boxes: list[tuple[slice, ...] | None] | None = None,
) -> list[Measurement]:
    """Every measure of ``joint`` on ``labels`` (catalog labels). ``quality``: bone key ->
    ``BoneQuality`` (``pipeline.quality``) of a network's segmentation (None or empty: labels
    from a reader or the truth); a bone judged unreliable makes every measure that needs it not
    measurable, and a network's one-piece bone is "closed" to be checked (``physis.BRIDGED``).
    ``boxes``: each bone's bounding box in ``labels`` when known (``InferenceResult.bone_boxes``)."""
    joint = get_joint(joint).key
    unreliable = frozenset(bone for bone, verdict in (quality or {}).items() if not verdict.reliable)
    volume = LabelVolume.from_image(labels, joint, unreliable, boxes)
    module = JOINT_MODULES[joint]
    blocked = {
        d.key: _blocked(volume, d.bones, d.complete, quality) or _unsided(volume, d, quality)
        for d in module.DEFINITIONS
    }
    found: dict = {}
    if any(reason is None for reason in blocked.values()):
        try:
            found = module.landmarks(volume)
        except NotMeasurable as error:
            blocked = {key: reason or str(error) for key, reason in blocked.items()}
    valid = {name: value for name, value in found.items() if not isinstance(value, NotMeasurable)}
    computed = module.values(valid) if valid else {}
    shown = module.display(valid) if hasattr(module, "display") and valid else {}
    results = []
    for d in module.DEFINITIONS:
        reason = blocked[d.key]
        if reason is None and d.key not in computed:
            failed = [str(found[name]) for name in d.needs if isinstance(found.get(name), NotMeasurable)]
            reason = failed[0] if failed else "landmarks not found"
        if reason is not None:
            results.append(Measurement(d, None, reason))
            continue
        points = shown.get(d.key) or {name: np.atleast_2d(valid[name]) for name in d.needs if np.size(valid[name]) >= 3}
        results.append(Measurement(d, computed[d.key], _side_doubt(d, quality), landmarks=points))
    return results + _growth_plates(volume, quality)


def _growth_plates(volume: LabelVolume, quality: dict | None) -> list[Measurement]:
    catalog = get_joint(volume.joint)
    out = []
    present = [b.key for b in catalog.bones if volume.has(b.key)]
    for bone in (b.key for b in catalog.bones if b.key in physis.LONG_BONES):
        reason = _blocked(volume, (bone,), (), quality)
        others = [key for key in present if key != bone]
        if reason is None and not others:
            reason = "no other bone to tell the joint end"
        if reason is None:
            # The mean of the other bones' voxels, from each one's box (no pass over the whole volume).
            centres, counts = zip(*(volume.centroid(key) for key in others))
            joint_centre = np.average(np.stack(centres), axis=0, weights=counts)
            try:
                out += physis.measure_bone(volume, bone, joint_centre, segmented=bool(quality))
                continue
            except NotMeasurable as error:
                reason = str(error)
        out += [Measurement(d, None, reason, bone=bone) for d in physis.DEFINITIONS]
    return out


# A side bone judged unreliable still tells the side above this quality: in model 5's calibration,
# none of the 6 fibulas scored 0.4-0.625 missed the true fibula (Dice < 0.1), 22 of the 25 below 0.1 did.
SIDE_QUALITY_FLOOR = 0.4


def _unsided(volume: LabelVolume, definition: Definition, quality: dict | None) -> str | None:
    """Why the lateral side of a measure that needs it is unknown, or None."""
    bone = definition.sided_by
    if not bone:
        return None
    if not volume.has(bone):
        return f"{bone} missing: the lateral side is unknown"
    verdict = (quality or {}).get(bone)
    if verdict is not None and verdict.score < SIDE_QUALITY_FLOOR:
        return f"{bone} segmentation too poor to tell the lateral side (quality {verdict.score:.2f})"
    return None


def _side_doubt(definition: Definition, quality: dict | None) -> str:
    """Why a measure's lateral side may be wrong ("" when not): its side bone judged unreliable."""
    verdict = (quality or {}).get(definition.sided_by) if definition.sided_by else None
    if verdict is None or verdict.reliable:
        return ""
    return (
        f"the lateral side is told by the {definition.sided_by}, whose segmentation is unreliable "
        f"(quality {verdict.score:.2f})"
    )


def _blocked(
    volume: LabelVolume, bones: tuple[str, ...], complete: tuple[str, ...], quality: dict | None
) -> str | None:
    """Why a measure needing ``bones`` cannot be made, or None."""
    for bone in bones:
        if not volume.has(bone):
            return f"{bone} missing"
        verdict = (quality or {}).get(bone)
        if verdict is not None and not verdict.reliable:
            return f"{bone} segmentation unreliable (quality {verdict.score:.2f})"
        if bone in complete and volume.touches_border(bone):
            return f"{bone} cut by the field of view"
    return None
