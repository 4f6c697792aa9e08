"""QC montage: per phantom, a mid slice of the image and the same slice with the bone labels
overlaid in the catalog's colors, written as one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from PediatricBoneSegLib.atomic import atomic_file
from PediatricBoneSegLib.catalog import get_joint

from .generator import Phantom


def _mid_slice(phantom: Phantom) -> tuple[np.ndarray, np.ndarray, float]:
    """The acquired slice showing the most bone (rows, columns) and its pixel aspect ratio."""
    labels = sitk.GetArrayViewFromImage(phantom.labels)
    index = int(np.argmax((labels > 0).reshape(labels.shape[0], -1).sum(axis=1)))
    spacing = phantom.image.GetSpacing()
    return sitk.GetArrayViewFromImage(phantom.image)[index], labels[index], spacing[1] / spacing[0]


def _overlay(image: np.ndarray, labels: np.ndarray, joint: str) -> np.ndarray:
    low, high = np.percentile(image, (0.5, 99.5))
    gray = np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    colors = np.zeros((256, 3))
    for bone in get_joint(joint).bones:
        colors[get_joint(joint).label_of(bone.key)] = bone.color_float
    mask = labels > 0
    rgb[mask] = 0.5 * rgb[mask] + 0.5 * colors[labels[mask]]
    return rgb


def save_montage(phantoms: Sequence[Phantom], path: str | Path, per_row: int = 1, title: bool = True) -> Path:
    """Write a PNG showing, for each phantom, the acquired slice with the most bone and the same
    slice with the labels overlaid; ``per_row`` phantoms side by side. Atomic (temp + rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not phantoms:
        raise ValueError("save_montage needs at least one phantom")
    if per_row < 1:
        raise ValueError(f"per_row must be at least 1, got {per_row}")
    path = Path(path)
    rows = -(-len(phantoms) // per_row)
    figure, axes = plt.subplots(rows, 2 * per_row, figsize=(3.4 * 2 * per_row, 3.5 * rows), squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    for index, phantom in enumerate(phantoms):
        row, column = divmod(index, per_row)
        left, right = axes[row, 2 * column], axes[row, 2 * column + 1]
        image, labels, aspect = _mid_slice(phantom)
        low, high = np.percentile(image, (0.5, 99.5))
        left.imshow(image, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest")
        right.imshow(_overlay(image, labels, phantom.joint), aspect=aspect, interpolation="nearest")
        if title:
            protocol = phantom.parameters.get("protocol")
            acquired = f", {protocol['family']} {protocol['acquisition']} {protocol['plane']}" if protocol else ""
            caption = f"{phantom.joint}, {phantom.age_years:.1f} y, {phantom.side}{acquired} (seed {phantom.seed})"
            left.set_title(caption, fontsize=8)
    figure.tight_layout()
    try:
        with atomic_file(path) as temporary:
            figure.savefig(temporary, dpi=100)
    finally:
        plt.close(figure)
    return path
