"""Clinical measurements of a segmented joint: pure functions of the label volume (spacing and
direction included) and the per-bone quality verdict; no network.

``measure(labels, joint, quality)`` returns one ``Measurement`` per measure of the joint and per
growth-plate measure of each of its long bones; each is a value with its landmarks or "not
measurable" with the reason (bone missing, cut by the field of view, unreliable segmentation,
landmark not found). One file per joint (shoulder, knee, ankle) and one for the growth plates;
each joint module has ``DEFINITIONS``, ``landmarks(volume)`` and ``values(landmarks)``, the latter
shared with the phantom generator's ground truth.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import SimpleITK as sitk

from ...catalog import get_joint
from . import ankle, knee, physis, shoulder
from .base import Definition, Measurement, NotMeasurable
from .geometry import LabelVolume

JOINT_MODULES: dict[str, ModuleType] = {"shoulder": shoulder, "knee": knee, "ankle": ankle}

__all__ = ["JOINT_MODULES", "Definition", "Measurement", "NotMeasurable", "definitions", "measure"]


def definitions(joint: str) -> tuple[Definition, ...]:
    """The joint's measures followed by the growth-plate measures (per long bone)."""
    return JOINT_MODULES[get_joint(joint).key].DEFINITIONS + physis.DEFINITIONS


def measure(labels: sitk.Image, joint: str, quality: dict | None = None) -> list[Measurement]:
    """Every measure of ``joint`` on ``labels`` (catalog labels). ``quality``: bone key ->
    ``BoneQuality`` (``pipeline.quality``); a bone judged unreliable makes every measure that
    needs it not measurable."""
    joint = get_joint(joint).key
    volume = LabelVolume.from_image(labels, joint)
    module = JOINT_MODULES[joint]
    blocked = {d.key: _blocked(volume, d.bones, d.complete, quality) for d in module.DEFINITIONS}
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
        results.append(Measurement(d, computed[d.key], landmarks=points))
    return results + _growth_plates(volume, quality)


def _growth_plates(volume: LabelVolume, quality: dict | None) -> list[Measurement]:
    catalog = get_joint(volume.joint)
    out = []
    any_bone = volume.labels > 0
    for bone in (b.key for b in catalog.bones if b.key in physis.LONG_BONES):
        reason = _blocked(volume, (bone,), (), quality)
        others = any_bone & ~volume.mask(bone)
        if reason is None and not others.any():
            reason = "no other bone to tell the joint end"
        if reason is None:
            joint_centre = volume.to_lps(np.argwhere(others)).mean(0)
            try:
                out += physis.measure_bone(volume, bone, joint_centre)
                continue
            except NotMeasurable as error:
                reason = str(error)
        out += [Measurement(d, None, reason, bone=bone) for d in physis.DEFINITIONS]
    return out


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
