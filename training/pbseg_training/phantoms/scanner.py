"""The scanner grid: an LPS image grid in a sagittal, coronal or axial plane (optionally tilted:
oblique), and the mapping of its voxels into the posed, mirrored, age-scaled anatomical frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Bounds

# Direction cosines (columns = index axes i, j, k in LPS); k, the slice axis, is i x j.
DIRECTIONS = {
    "sagittal": np.array([[0, 1, 0], [0, 0, -1], [-1, 0, 0]], dtype=float).T,
    "coronal": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float).T,
    "axial": np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float).T,
}


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (radians)."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class ScannerGrid:
    """``shape``: numpy (k, j, i) = (slices, rows, columns); ``spacing`` ITK (i, j, k) mm.

    ``to_adult`` (3x3) and ``offset`` map a voxel index (i, j, k) to the adult anatomical frame:
    ``a = to_adult @ index + offset``; ``scale`` turns adult-frame distances into real mm."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    to_adult: np.ndarray
    offset: np.ndarray
    scale: float

    @classmethod
    def build(
        cls,
        plane: str,
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
        center: np.ndarray,
        rotation: np.ndarray,
        mirror: bool,
        anatomy_center_real: np.ndarray,
        axis_scale: np.ndarray,
        tilt: np.ndarray | None = None,
    ) -> ScannerGrid:
        """The anatomical point ``anatomy_center_real`` (real mm, before mirroring) lands on the
        physical grid centre ``center``; the anatomy is rotated by ``rotation`` around it.
        ``tilt`` (a rotation matrix) turns the slice stack away from the pure plane: an oblique
        acquisition, whose direction cosines say so."""
        direction = DIRECTIONS[plane] if tilt is None else tilt @ DIRECTIONS[plane]
        extent = (np.array(shape[::-1]) - 1) * np.asarray(spacing)
        origin = np.asarray(center) - direction @ (extent / 2.0)
        flip = np.diag([-1.0 if mirror else 1.0, 1.0, 1.0])
        # physical p -> real anatomical a = flip R^T (p - center) + anatomy_center_real -> adult a / axis_scale
        linear = np.diag(1.0 / axis_scale) @ flip @ rotation.T
        to_adult = linear @ direction @ np.diag(spacing)
        offset = linear @ (origin - np.asarray(center)) + anatomy_center_real / axis_scale
        return cls(
            shape, tuple(spacing), tuple(origin), direction, to_adult, offset, float(np.prod(axis_scale) ** (1.0 / 3.0))
        )

    def adult_coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Adult-frame (x, y, z) of every voxel centre, float32 arrays of ``shape``."""
        k, j, i = (np.arange(n, dtype=np.float32) for n in self.shape)
        index = (i[None, None, :], j[None, :, None], k[:, None, None])
        m = self.to_adult.astype(np.float32)
        return tuple(  # type: ignore[return-value]
            (m[a, 0] * index[0] + m[a, 1] * index[1]) + (m[a, 2] * index[2] + np.float32(self.offset[a]))
            for a in range(3)
        )

    def block(self, bounds: Bounds, margin_mm: float) -> tuple[slice, slice, slice] | None:
        """Numpy slices (k, j, i) of the voxels within ``bounds`` (adult frame) plus a real-mm
        margin; None when the box is outside the field of view."""
        low, high = np.asarray(bounds[0], float), np.asarray(bounds[1], float)
        corners = np.array([[(low, high)[c >> a & 1][a] for a in range(3)] for c in range(8)])
        index = np.linalg.solve(self.to_adult, (corners - self.offset).T)  # (3, 8): i, j, k
        pad = margin_mm / np.asarray(self.spacing)
        first = np.maximum(np.floor(index.min(axis=1) - pad), 0).astype(int)
        last = np.minimum(np.ceil(index.max(axis=1) + pad), np.array(self.shape[::-1]) - 1).astype(int)
        if np.any(last < first):
            return None
        return tuple(slice(first[a], last[a] + 1) for a in (2, 1, 0))  # type: ignore[return-value]
