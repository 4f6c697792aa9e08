"""Exact conversion between MRML volume nodes and SimpleITK images.

MRML places voxel (i, j, k) at ``IJKToRAS @ (i, j, k, 1)`` in RAS millimetres; ITK places it at
``origin + direction @ diag(spacing) @ (i, j, k)`` in LPS millimetres. The two differ only by the
sign of the first two physical axes, so the conversion is exact (no resampling). The voxel array
of both is [k, j, i] in numpy order. Parent transforms are not applied: the outputs are placed
under the input's transform instead (see ``logic.py``).

Works on node objects through their methods only, so this file never imports ``slicer``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras(volume_node: Any) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix (millimetres)."""
    matrix = vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def ijk_to_ras_of_image(image: sitk.Image) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix that places ``image``'s voxels where ITK places them."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = RAS_FROM_LPS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = RAS_FROM_LPS @ np.asarray(image.GetOrigin(), dtype=float)
    return matrix


def set_ijk_to_ras(volume_node: Any, matrix: np.ndarray) -> None:
    vtk_matrix = vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            vtk_matrix.SetElement(row, column, float(matrix[row, column]))
    volume_node.SetIJKToRASMatrix(vtk_matrix)


def image_from_volume_node(volume_node: Any) -> sitk.Image:
    """A SimpleITK image with the node's voxels (copied, same pixel type) and geometry.

    Raises ValueError naming the node when it has no voxels or more than one component."""
    image_data = volume_node.GetImageData() if volume_node is not None else None
    name = volume_node.GetName() if volume_node is not None else "None"
    if image_data is None or image_data.GetNumberOfPoints() == 0 or image_data.GetPointData().GetScalars() is None:
        raise ValueError(f"volume {name!r} has no voxel data")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise ValueError(
            f"volume {name!r} has {image_data.GetNumberOfScalarComponents()} components per voxel; "
            "a single-channel (grayscale) MR volume is needed"
        )
    columns, rows, slices = image_data.GetDimensions()
    array = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(slices, rows, columns)
    image = sitk.GetImageFromArray(array.copy())
    matrix = ijk_to_ras(volume_node)
    lps = RAS_FROM_LPS @ matrix[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"volume {name!r} has a degenerate IJK-to-RAS matrix")
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(d) for d in (lps / spacing).ravel()))
    image.SetOrigin(tuple(float(o) for o in RAS_FROM_LPS @ matrix[:3, 3]))
    return image


def vtk_image_from_array(array: np.ndarray) -> vtkImageData:
    """A vtkImageData holding a copy of the [k, j, i] ``array`` (origin 0, spacing 1: MRML keeps the
    geometry in the node)."""
    array = np.ascontiguousarray(array)
    image_data = vtkImageData()
    image_data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image_data.GetPointData().SetScalars(scalars)
    return image_data


def update_volume_node_from_image(volume_node: Any, image: sitk.Image) -> None:
    """Give ``volume_node`` the voxels (copied) and the exact geometry of ``image``."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("a 3D single-channel image is needed")
    volume_node.SetAndObserveImageData(vtk_image_from_array(sitk.GetArrayViewFromImage(image)))
    set_ijk_to_ras(volume_node, ijk_to_ras_of_image(image))
