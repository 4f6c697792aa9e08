"""Canonical orientation without resampling (NumPy only): the exact axis permutation and flips that
bring an image array to the [Superior, Posterior, Left] order of an LPS image, and back. The
pipeline slices volumes in this frame; the QC picture draws them in it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PLANE_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}  # canonical axis held fixed by each plane


@dataclass(frozen=True)
class CanonicalTransform:
    """Permutation + flips from an image array ([z, y, x] as SimpleITK returns it) to the
    canonical [S, P, L] array, and back. Exact: no interpolation."""

    permutation: tuple[int, int, int]  # canonical axis c takes array axis permutation[c]
    flips: tuple[bool, bool, bool]  # flip canonical axis c

    @classmethod
    def from_direction(cls, direction: tuple[float, ...]) -> CanonicalTransform:
        """``direction``: the 9 direction cosines of an ITK image (row-major, columns = index axes
        i, j, k in physical LPS)."""
        matrix = np.asarray(direction, dtype=float).reshape(3, 3)
        # Assign each physical axis (L, P, S) the index axis most aligned with it, greedily.
        assignment: dict[int, int] = {}
        for flat in np.argsort(-np.abs(matrix), axis=None):
            physical, index_axis = divmod(int(flat), 3)
            if physical not in assignment and index_axis not in assignment.values():
                assignment[physical] = index_axis
        # numpy array axis of index axis i (x) is 2, of j (y) 1, of k (z) 0.
        permutation = tuple(2 - assignment[physical] for physical in (2, 1, 0))
        flips = tuple(bool(matrix[physical, assignment[physical]] < 0) for physical in (2, 1, 0))
        return cls(permutation, flips)  # type: ignore[arg-type]

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        out = np.transpose(array, self.permutation)
        return np.flip(out, [axis for axis, flip in enumerate(self.flips) if flip]) if any(self.flips) else out

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        if any(self.flips):
            array = np.flip(array, [axis for axis, flip in enumerate(self.flips) if flip])
        return np.transpose(array, np.argsort(self.permutation))

    def canonical_spacing(self, spacing_xyz: tuple[float, float, float]) -> tuple[float, float, float]:
        """ITK spacing (x, y, z) → spacing of the canonical axes (S, P, L)."""
        spacing_zyx = tuple(spacing_xyz)[::-1]
        return tuple(float(spacing_zyx[axis]) for axis in self.permutation)  # type: ignore[return-value]
