"""Preprocessing shared by inference and training: canonical slicing, intensity normalization and
in-plane resampling of 2D slices to the network's square input.

Canonical orientation: axes permuted and flipped (never resampled) so that the array axes
(0, 1, 2) point to Superior, Posterior and Left (numpy order of an LPS image). The slicing axis is
the acquisition axis (largest spacing); for a near-isotropic volume, the joint's usual plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..network.config import PreprocessingConfig
from .orientation import PLANE_AXIS, CanonicalTransform


def slicing_axis(canonical_spacing: tuple[float, float, float], plane: str, config: PreprocessingConfig) -> int:
    """The canonical axis to slice along: the largest spacing, or ``plane`` when near-isotropic."""
    spacing = np.asarray(canonical_spacing)
    if spacing.max() / spacing.min() < config.near_isotropic_ratio:
        return PLANE_AXIS[plane]
    return int(np.argmax(spacing))


def normalize_intensities(volume: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """Clip to the configured percentiles and z-score (float32). Raises on a constant or
    non-finite volume, which no MR of a joint is."""
    if not np.isfinite(volume).all():
        raise ValueError("the volume contains NaN or infinite values")
    low, high = (float(v) for v in np.percentile(volume, config.clip_percentiles))  # Python floats keep float32
    if high <= low:
        raise ValueError("the volume has (almost) constant intensity")
    normalized = np.clip(volume.astype(np.float32, copy=False), low, high)
    mean, std = float(normalized.mean()), float(normalized.std())
    # In place: the same float32 operations as (x - mean) / std without two more volume copies.
    normalized -= mean
    normalized /= max(std, 1e-6)
    return normalized


class SliceResampler:
    """Maps 2D slices of shape (H, W) with pixel spacing (sh, sw) mm to the network's square
    ``size`` input: isotropic in-plane resampling that keeps the aspect ratio, centred padding."""

    def __init__(self, shape: tuple[int, int], spacing: tuple[float, float], size: int) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        extent = (shape[0] * spacing[0], shape[1] * spacing[1])
        pixel = max(extent) / size  # mm per network pixel
        self.inner = tuple(max(1, min(size, round(e / pixel))) for e in extent)
        self.size = size
        top, left = (size - self.inner[0]) // 2, (size - self.inner[1]) // 2
        self.crop = (top, top + self.inner[0], left, left + self.inner[1])
        self.padding = (left, size - self.inner[1] - left, top, size - self.inner[0] - top)

    def images_to_network(self, slices: torch.Tensor, pad_value: float) -> torch.Tensor:
        """[N, C, H, W] float → [N, C, size, size] (bilinear)."""
        resized = F.interpolate(slices, size=self.inner, mode="bilinear", align_corners=False, antialias=True)
        return F.pad(resized, self.padding, value=pad_value)

    def labels_to_network(self, labels: torch.Tensor) -> torch.Tensor:
        """[N, H, W] integer labels → [N, size, size] (nearest; background padding)."""
        resized = F.interpolate(labels[:, None].float(), size=self.inner, mode="nearest-exact")
        return F.pad(resized, self.padding, value=0.0)[:, 0].long()

    def from_network(self, maps: torch.Tensor) -> torch.Tensor:
        """[N, C, size, size] (logits or probabilities) → [N, C, H, W] (bilinear)."""
        top, bottom, left, right = self.crop
        return F.interpolate(maps[:, :, top:bottom, left:right], size=self.shape, mode="bilinear", align_corners=False)


@dataclass
class SlicedVolume:
    """A volume ready for the 2D network: canonical orientation, normalized intensities, slicing
    axis first. Inference and training both go through ``slice_volume``.

    ``slices``: [N, H, W] float32 (N slices along the slicing axis); ``spacing``: (sh, sw) mm of a slice.
    """

    slices: np.ndarray
    spacing: tuple[float, float]
    transform: CanonicalTransform
    axis: int
    resampler: SliceResampler
    pad_value: float

    def network_input(self, start: int, stop: int) -> torch.Tensor:
        """Slices ``start:stop`` as the network's input [b, 1, size, size] float32."""
        batch = torch.from_numpy(np.ascontiguousarray(self.slices[start:stop]))[:, None]
        return self.resampler.images_to_network(batch, self.pad_value)

    def network_labels(self, labels: np.ndarray) -> torch.Tensor:
        """A label array in the original [z, y, x] order → [N, size, size] long, aligned with the slices."""
        sliced = np.moveaxis(self.transform.to_canonical(labels), self.axis, 0)
        return self.resampler.labels_to_network(torch.from_numpy(np.ascontiguousarray(sliced)))

    def restore(self, slice_labels: np.ndarray) -> np.ndarray:
        """[N, H, W] per-slice results → the original [z, y, x] array order."""
        return np.ascontiguousarray(self.transform.from_canonical(np.moveaxis(slice_labels, 0, self.axis)))


def slice_volume(
    array: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    direction: tuple[float, ...],
    plane: str,
    config: PreprocessingConfig,
    normalized: np.ndarray | None = None,
) -> SlicedVolume:
    """``array``: [z, y, x] as SimpleITK returns it; ``plane``: the joint's usual plane, used only
    for near-isotropic volumes. ``normalized``: ``canonical_normalized(array, direction, config)``
    when already computed: the slicings of one volume along several axes then share it (views)."""
    transform = CanonicalTransform.from_direction(direction)
    spacing = transform.canonical_spacing(spacing_xyz)
    axis = slicing_axis(spacing, plane, config)
    if normalized is None:
        normalized = canonical_normalized(array, direction, config)
    slices = np.moveaxis(normalized, axis, 0)
    in_plane = tuple(s for index, s in enumerate(spacing) if index != axis)
    resampler = SliceResampler(slices.shape[1:], in_plane, config.size)  # type: ignore[arg-type]
    return SlicedVolume(slices, in_plane, transform, axis, resampler, float(normalized.min()))  # type: ignore[arg-type]


def canonical_normalized(array: np.ndarray, direction: tuple[float, ...], config: PreprocessingConfig) -> np.ndarray:
    """``array`` ([z, y, x]) in canonical [S, P, L] order with normalized intensities (float32)."""
    return normalize_intensities(CanonicalTransform.from_direction(direction).to_canonical(array), config)


class JointSlicings:
    """One volume as each joint's domain sees it: ``slicings(joint)`` is the ``SlicedVolume`` for
    that joint's slicing plane (``planes``: joint -> plane; near-isotropic volumes only). Every
    slicing axis is prepared once, all from one normalized copy of the volume; ``release()`` frees
    them."""

    def __init__(
        self,
        array: np.ndarray,
        spacing_xyz: tuple[float, float, float],
        direction: tuple[float, ...],
        config: PreprocessingConfig,
        planes: dict[str, str],
    ) -> None:
        self._array, self._spacing, self._direction = array, spacing_xyz, direction
        self._config, self._planes = config, planes
        self._canonical_spacing = CanonicalTransform.from_direction(direction).canonical_spacing(spacing_xyz)
        self._normalized: np.ndarray | None = canonical_normalized(array, direction, config)
        self._prepared: dict[int, SlicedVolume] = {}

    def __call__(self, joint: str) -> SlicedVolume:
        plane = self._planes[joint]
        axis = slicing_axis(self._canonical_spacing, plane, self._config)
        if axis not in self._prepared:
            self._prepared[axis] = slice_volume(
                self._array, self._spacing, self._direction, plane, self._config, self._normalized
            )
        return self._prepared[axis]

    def release(self) -> None:
        self._normalized = None
        self._prepared.clear()
