"""What no joint MR volume is, checked on the image itself (in memory, from a file or from Slicer),
without reading or writing files: the one check that ``pbseg segment``, ``pbseg validate``, the
Slicer logic and ``segment_image`` apply. ``VolumeReadError`` names the volume and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

# Angle between voxel axes beyond right angles that is a shear, not float rounding of a rotation
# (0.01 degree moves a voxel 0.035 mm over 200 mm).
_SHEAR_TOLERANCE_DEGREES = 0.01


class VolumeReadError(ValueError):
    """An input cannot be segmented; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def check_volume(image: sitk.Image, path: str | Path) -> None:
    """Raise ``VolumeReadError`` for what no joint MR is: not 3D scalar, a direction matrix that is
    not orthonormal, NaN, empty or constant."""
    if image.GetDimension() != 3:
        raise VolumeReadError(path, f"is a {image.GetDimension()}D image; a 3D volume is needed")
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise VolumeReadError(path, f"has {components} values per voxel; a scalar volume is needed")
    if min(image.GetSize()) < 2:
        raise VolumeReadError(path, f"has a single slice (size {image.GetSize()}); a 3D volume is needed")
    problem = direction_problem(np.reshape(image.GetDirection(), (3, 3)))
    if problem:
        raise VolumeReadError(path, problem)
    array = sitk.GetArrayViewFromImage(image)
    non_finite = int(np.count_nonzero(~np.isfinite(array)))
    if non_finite:
        raise VolumeReadError(path, non_finite_problem(non_finite))
    low, high = float(array.min()), float(array.max())
    if low == high:
        what = "all voxels are zero" if high == 0 else f"all voxels have the same value ({high:g})"
        raise VolumeReadError(path, f"{what}: the volume is empty")


def direction_problem(matrix: np.ndarray, what: str = "the direction matrix") -> str | None:
    """Why a voxel-to-world matrix (columns: the voxel axes, any length) is no rotation of a
    rectangular grid, or None. A sheared grid cannot be stored in NIfTI's qform, so ITK's writers
    coerce it and the outputs would no longer lie on the input."""
    matrix = np.asarray(matrix, dtype=float)
    lengths = np.linalg.norm(matrix, axis=0)
    if np.any(lengths < 1e-12):
        return f"{what} is degenerate (a voxel axis of zero length)"
    cosines = (matrix / lengths).T @ (matrix / lengths)
    shear = float(np.degrees(np.max(np.arcsin(np.clip(np.abs(cosines[np.triu_indices(3, 1)]), 0, 1)))))
    if shear > _SHEAR_TOLERANCE_DEGREES:
        return f"{what} is not orthogonal (shear of {shear:.2f} degrees); resample the volume to an orthogonal grid"
    return None


def non_finite_problem(count: int) -> str:
    """The message for ``count`` NaN or infinite voxels (file checks add how ITK would read them)."""
    return f"contains {count} NaN or infinite voxel value(s)"
