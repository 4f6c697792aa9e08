"""Bounding boxes of the bones of a label volume, shared by post-processing, surfaces, morphometry
and the segmentation file."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def bone_boxes(labels: np.ndarray, num_classes: int) -> list[tuple[slice, ...] | None]:
    """Bounding box of each label 1..num_classes-1 of ``labels`` (None where absent); other values
    are ignored. A network's labels are already in range and are read as they are."""
    if labels.dtype.kind not in "iu" or labels.size == 0 or labels.min() < 0 or int(labels.max()) >= num_classes:
        labels = np.where((labels >= 0) & (labels < num_classes), labels, 0).astype(np.uint8)
    return list(ndimage.find_objects(labels, max_label=num_classes - 1))
