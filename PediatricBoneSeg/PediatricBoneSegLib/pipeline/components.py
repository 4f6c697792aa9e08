"""The 3D connected components of each bone of a label volume, found once per case: the
post-processing decides from them which pieces to keep, the quality how fragmented the network's
prediction is. NumPy and SciPy only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from ..labelmaps import bone_boxes

FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connected: a bone touching at a corner is one piece


@dataclass
class BoneComponents:
    """One bone's pieces inside its bounding box. ``box``: the bone's bounding box in the label
    volume (array axes); ``labels``: [box shape] int32, the piece of each voxel (1..count; 0: not
    this bone); ``sizes``: [count + 1] voxels per piece (``sizes[0]`` is 0)."""

    box: tuple[slice, ...]
    labels: np.ndarray
    sizes: np.ndarray

    @classmethod
    def of_mask(cls, mask: np.ndarray, box: tuple[slice, ...]) -> BoneComponents:
        """The pieces of a [z, y, x] bool ``mask`` that lies at ``box`` of the label volume."""
        labels, _ = ndimage.label(mask, structure=FULL_CONNECTIVITY)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        return cls(box, labels, sizes)

    @property
    def count(self) -> int:
        """Number of pieces."""
        return len(self.sizes) - 1

    @property
    def voxels(self) -> int:
        return int(self.sizes.sum())

    @property
    def main(self) -> int:
        """Index of the largest piece (the first of equal ones)."""
        return int(np.argmax(self.sizes))

    @property
    def largest(self) -> int:
        """Voxels of the largest piece."""
        return int(self.sizes.max())

    @cached_property
    def piece_boxes(self) -> list[tuple[slice, ...]]:
        """The bounding box of each piece 1..count inside ``labels`` (index 0: piece 1)."""
        return ndimage.find_objects(self.labels)

    def near_main(self, piece: int, spacing_zyx: Sequence[float], gap_mm: float) -> bool:
        """Whether ``piece`` comes within ``gap_mm`` of the main piece (voxel centres). Exact, and
        computed in the piece's box widened by the gap only (a main-piece voxel outside it is
        farther), so memory scales with the piece."""
        spacing = np.asarray(spacing_zyx, dtype=float)
        reach = np.ceil(gap_mm / spacing).astype(int)
        around = tuple(
            slice(max(0, axis.start - r), min(n, axis.stop + r))
            for axis, r, n in zip(self.piece_boxes[piece - 1], reach, self.labels.shape)
        )
        crop = self.labels[around]
        main_voxels = crop == self.main
        if not main_voxels.any():
            return False
        distance = ndimage.distance_transform_edt(~main_voxels, sampling=spacing)
        return float(distance[crop == piece].min()) <= gap_mm


def bone_components(labels: np.ndarray, num_classes: int) -> list[BoneComponents | None]:
    """Per label 1..num_classes-1 of the [z, y, x] ``labels``, its pieces inside its bounding box
    (``labelmaps.bone_boxes``; None where absent)."""
    return [
        None if box is None else BoneComponents.of_mask(labels[box] == value, box)
        for value, box in enumerate(bone_boxes(labels, num_classes), start=1)
    ]
