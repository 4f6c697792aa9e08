"""Growth-plate-aware anatomical post-processing of a label volume, and plausibility warnings.

A child's bone is often split by its growth plate (physis) into epiphysis and metaphysis, so a bone
may be several 3D components: the largest (main body) is kept with every fragment that is large
enough and close to it; distant islands go. Internal holes are filled. Implausible results (a bone
missing, a volume outside the catalog's range, bones in an impossible relative position) are
reported as warnings, never hidden.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..catalog import RELATIVE_POSITIONS, Joint, get_joint
from ..labelmaps import bone_boxes
from .components import BoneComponents, bone_components

MAX_FRAGMENT_GAP_MM = 6.0  # centre-to-centre: a physis is 1-4 mm thick (thinner on MR as it closes)
MIN_FRAGMENT_FRACTION = 0.01  # of the main body's volume: smaller fragments near it are noise
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def clean_labels(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    joint: str,
    direction: Sequence[float] | None = None,
    components: Sequence[BoneComponents | None] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """``labels``: [z, y, x] integer array in the joint's label space; ``spacing_zyx``: mm per
    voxel along the array axes; ``direction``: the image's ITK direction cosines (identity when
    None), used only to check relative positions; ``components``: the pieces of each bone of
    ``labels`` (``components.bone_components``) when already found. Returns the cleaned uint8
    labels (one label per voxel, values outside the joint's labels removed) and the plausibility
    warnings."""
    spec = get_joint(joint)
    spacing = np.asarray(spacing_zyx, dtype=float)
    cleaned = np.zeros(labels.shape, dtype=np.uint8)
    # Work in each bone's bounding box: memory and time scale with the bone, not the volume. The
    # boxes of the input also contain each cleaned bone (cleaning only removes voxels, and fills
    # holes inside the bone), so they serve every later step.
    components = components if components is not None else bone_components(labels, spec.num_classes)
    boxes = [None if parts is None else parts.box for parts in components]
    for value, parts in enumerate(components, start=1):
        if parts is not None:
            cleaned[parts.box][kept_pieces(parts, spacing)[parts.labels]] = value
    for value, box in enumerate(boxes, start=1):
        if box is not None:
            _fill_holes(cleaned[box], value)
    return cleaned, plausibility_warnings(cleaned, spacing, spec.key, direction, boxes)


def kept_pieces(parts: BoneComponents, spacing_zyx: Sequence[float]) -> np.ndarray:
    """[count + 1] bool, per piece of ``parts``: kept (the largest piece, and the pieces of at least
    ``MIN_FRAGMENT_FRACTION`` of its size within ``MAX_FRAGMENT_GAP_MM`` of it); index 0 is False."""
    sizes, main = parts.sizes, parts.main
    keep = np.zeros(parts.count + 1, dtype=bool)
    keep[main] = True
    for label in range(1, parts.count + 1):
        if label != main and sizes[label] >= MIN_FRAGMENT_FRACTION * sizes[main]:
            keep[label] = parts.near_main(label, spacing_zyx, MAX_FRAGMENT_GAP_MM)
    return keep


def _fill_holes(crop: np.ndarray, value: int) -> None:
    """Fill the enclosed cavities of bone ``value`` in place, only where no other bone is.
    ``crop``: a box containing the whole bone, so background on its faces is outside the bone;
    background is 6-connected (the complement of the 26-connected bone)."""
    background, count = ndimage.label(crop != value)
    if count == 0:
        return
    faces = [
        background[0],
        background[-1],
        background[:, 0],
        background[:, -1],
        background[:, :, 0],
        background[:, :, -1],
    ]
    outside = np.ones(count + 1, dtype=bool)  # label 0 is the bone itself
    outside[1:] = False
    outside[np.concatenate([face.ravel() for face in faces])] = True
    holes = ~outside[background]  # a lookup: no sorting, no int64 copies of the box
    crop[holes & (crop == 0)] = value


def plausibility_warnings(
    labels: np.ndarray,
    spacing_zyx: Sequence[float],
    joint: str,
    direction: Sequence[float] | None = None,
    boxes: Sequence[tuple[slice, ...] | None] | None = None,
) -> list[str]:
    """Warnings for missing bones, volumes outside ``Bone.volume_range_ml`` and relative positions
    that contradict ``catalog.RELATIVE_POSITIONS`` (centroids compared in patient LPS axes).
    ``boxes``: per bone, a box that contains it (``bone_boxes``), when already known."""
    spec = get_joint(joint)
    spacing = np.asarray(spacing_zyx, dtype=float)
    boxes = boxes if boxes is not None else bone_boxes(labels, spec.num_classes)
    counts = np.zeros(spec.num_classes, dtype=np.int64)
    for value, box in enumerate(boxes, start=1):
        if box is not None:
            counts[value] = np.count_nonzero(labels[box] == value)
    warnings = []
    for value, bone in enumerate(spec.bones, start=1):
        volume_ml = counts[value] * float(np.prod(spacing)) / 1000.0
        low, high = bone.volume_range_ml
        if counts[value] == 0:
            warnings.append(f"{bone.display_name}: not found (bone missing from the segmentation)")
        elif not low <= volume_ml <= high:
            warnings.append(
                f"{bone.display_name}: volume {volume_ml:.2f} ml is outside the plausible range {low:g}-{high:g} ml"
            )
    matrix = _IDENTITY if direction is None else direction
    warnings.extend(_position_warnings(labels, spacing, spec, counts, matrix, boxes))
    return warnings


def _position_warnings(
    labels: np.ndarray,
    spacing: np.ndarray,
    spec: Joint,
    counts: np.ndarray,
    direction: Sequence[float],
    boxes: Sequence[tuple[slice, ...] | None],
) -> list[str]:
    rules = RELATIVE_POSITIONS.get(spec.key, ())
    present = [value for value in range(1, spec.num_classes) if counts[value]]
    if not rules or len(present) < 2:
        return []
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    # index (z, y, x) -> physical LPS offset: D @ (spacing_xyz * index_xyz)
    physical = {value: matrix @ (_centroid(labels, value, boxes[value - 1])[::-1] * spacing[::-1]) for value in present}
    axis = {"superior": (2, 1.0, "inferior"), "anterior": (1, -1.0, "posterior")}
    warnings = []
    for bone, relation, other in rules:
        first, second = spec.label_of(bone), spec.label_of(other)
        if first not in physical or second not in physical:
            continue
        index, sign, opposite = axis[relation]
        if sign * (physical[first][index] - physical[second][index]) <= 0:
            names = spec.bones[first - 1].display_name, spec.bones[second - 1].display_name
            warnings.append(
                f"{names[0]} lies {opposite} to the {names[1]} instead of {relation}: the segmentation or the "
                "image orientation is implausible"
            )
    return warnings


def _centroid(labels: np.ndarray, value: int, box: tuple[slice, ...]) -> np.ndarray:
    """Mean (z, y, x) index of the voxels of ``value`` within its bounding box ``box``."""
    mask = labels[box] == value
    centre = []
    for axis, edge in enumerate(box):
        profile = mask.sum(axis=tuple(a for a in range(3) if a != axis))  # voxels per index along the axis
        centre.append(edge.start + float(profile @ np.arange(len(profile))) / float(profile.sum()))
    return np.asarray(centre)
