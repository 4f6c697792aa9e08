"""QC montage: per phantom, a mid slice of the image and the same slice with the bone labels
overlaid in the catalog's colors, written as one PNG."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..catalog import get_joint
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


def save_montage(phantoms: Sequence[Phantom], path: str | Path, title: bool = True) -> Path:
    """Write a PNG: one row per phantom (its mid slice; the slice with labels overlaid). Atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not phantoms:
        raise ValueError("save_montage needs at least one phantom")
    path = Path(path)
    figure, axes = plt.subplots(len(phantoms), 2, figsize=(7.0, 3.5 * len(phantoms)), squeeze=False)
    for row, phantom in zip(axes, phantoms):
        image, labels, aspect = _mid_slice(phantom)
        low, high = np.percentile(image, (0.5, 99.5))
        row[0].imshow(image, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest")
        row[1].imshow(_overlay(image, labels, phantom.joint), aspect=aspect, interpolation="nearest")
        for axis in row:
            axis.set_axis_off()
        if title:
            row[0].set_title(
                f"{phantom.joint}, {phantom.age_years:.1f} y, {phantom.side} (seed {phantom.seed})",
                fontsize=9,
                loc="left",
            )
    figure.tight_layout()
    handle, temporary = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=110)
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
