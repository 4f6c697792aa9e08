"""Bounding boxes of the bones of a label volume, found once per case and shared by post-processing,
quality, surfaces, morphometry and the segmentation file."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def bone_boxes(labels: np.ndarray, num_classes: int) -> list[tuple[slice, ...] | None]:
    """Bounding box of each label 1..num_classes-1 of ``labels`` (None where absent); other values
    are ignored. A network's labels are already in range and are read as they are."""
    if labels.dtype.kind not in "iu" or labels.size == 0 or labels.min() < 0 or int(labels.max()) >= num_classes:
        labels = np.where((labels >= 0) & (labels < num_classes), labels, 0).astype(np.uint8)
    return list(ndimage.find_objects(labels, max_label=num_classes - 1))


def tight_boxes(labels: np.ndarray, boxes: Sequence[tuple[slice, ...] | None]) -> list[tuple[slice, ...] | None]:
    """The bounding box of each label 1..len(boxes) of ``labels``, searched only inside its box of
    ``boxes`` (which must contain every voxel of that label: the boxes before a step that only
    removes voxels or fills cavities). None where a label is absent."""
    result: list[tuple[slice, ...] | None] = []
    for value, box in enumerate(boxes, start=1):
        found = None if box is None else ndimage.find_objects((labels[box] == value).view(np.uint8))
        inner = found[0] if found else None
        result.append(
            None if inner is None else tuple(slice(o.start + i.start, o.start + i.stop) for o, i in zip(box, inner))
        )
    return result
