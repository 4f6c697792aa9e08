"""Per-bone morphometry: volumes, surface area, bounding box and principal-axis lengths.

Voxel quantities come from the label volume, mesh quantities from the closed surfaces. Positions
are patient LPS millimetres; the principal axes are the full lengths of the ellipsoid with the
bone's second moments (a solid ellipsoid of semi-axis a has variance a²/5 along it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkFiltersCore import vtkMassProperties

from ..catalog import get_joint
from ..labelmaps import bone_boxes


@dataclass
class BoneMeasurement:
    """One bone. ``mesh_volume_mm3`` and ``surface_area_mm2`` are None without a surface;
    ``bbox_min_mm``/``bbox_max_mm``: LPS bounding box of the voxel centres; ``principal_axes_mm``:
    equivalent-ellipsoid axis lengths, longest first."""

    bone: str
    display_name: str
    voxel_volume_mm3: float
    mesh_volume_mm3: float | None
    surface_area_mm2: float | None
    bbox_min_mm: tuple[float, float, float]
    bbox_max_mm: tuple[float, float, float]
    principal_axes_mm: tuple[float, float, float]

    def as_row(self) -> dict[str, object]:
        """Flat row for CSV / table export, keyed by ``COLUMNS`` (units in the names)."""
        values = (
            self.bone,
            self.display_name,
            self.voxel_volume_mm3,
            self.mesh_volume_mm3,
            self.surface_area_mm2,
            *self.bbox_min_mm,
            *self.bbox_max_mm,
            *self.principal_axes_mm,
        )
        return {
            column: round(float(value), 3) if isinstance(value, (int, float)) else value
            for column, value in zip(COLUMNS, values)
        }


COLUMNS: tuple[str, ...] = (
    "bone",
    "display_name",
    "voxel_volume_mm3",
    "mesh_volume_mm3",
    "surface_area_mm2",
    *(f"bbox_{end}_{axis}_mm" for end in ("min", "max") for axis in "LPS"),
    *(f"principal_axis_{i}_mm" for i in (1, 2, 3)),
)
"""Columns of ``BoneMeasurement.as_row`` (morphometry.csv)."""


def measure_bones(
    labels: sitk.Image,
    joint: str,
    surfaces: dict[str, vtkPolyData] | None = None,
    boxes: Sequence[tuple[slice, ...] | None] | None = None,
) -> list[BoneMeasurement]:
    """One measurement per bone present in ``labels`` (catalog order); ``surfaces`` from
    ``surfaces.bone_surfaces`` add the mesh volume and area; ``boxes``: each bone's bounding box
    (``labelmaps.bone_boxes``) when already known."""
    spec = get_joint(joint)
    array = sitk.GetArrayViewFromImage(labels)
    boxes = boxes if boxes is not None else bone_boxes(array, spec.num_classes)
    spacing_xyz = np.asarray(labels.GetSpacing(), dtype=float)
    # index (x, y, z) -> LPS: origin + D @ (spacing * index)
    linear = np.asarray(labels.GetDirection(), dtype=float).reshape(3, 3) * spacing_xyz
    origin = np.asarray(labels.GetOrigin(), dtype=float)
    measurements = []
    for value, box in enumerate(boxes, start=1):
        if box is None:
            continue
        bone = spec.bones[value - 1]
        mask = array[box] == value
        offset = np.array([s.start for s in box][::-1], dtype=float)
        boundary = np.argwhere(mask & ~ndimage.binary_erosion(mask))[:, ::-1] + offset  # extremes lie on it
        points = boundary @ linear.T + origin
        mesh_volume = area = None
        if surfaces is not None and bone.key in surfaces:
            properties = vtkMassProperties()
            properties.SetInputData(surfaces[bone.key])
            properties.Update()
            mesh_volume, area = properties.GetVolume(), properties.GetSurfaceArea()
        measurements.append(
            BoneMeasurement(
                bone=bone.key,
                display_name=bone.display_name,
                voxel_volume_mm3=float(mask.sum()) * float(np.prod(spacing_xyz)),
                mesh_volume_mm3=mesh_volume,
                surface_area_mm2=area,
                bbox_min_mm=tuple(points.min(axis=0).tolist()),  # type: ignore[arg-type]
                bbox_max_mm=tuple(points.max(axis=0).tolist()),  # type: ignore[arg-type]
                principal_axes_mm=_principal_axes(mask, linear),
            )
        )
    return measurements


def _principal_axes(mask: np.ndarray, linear: np.ndarray) -> tuple[float, float, float]:
    """Equivalent-ellipsoid axis lengths (mm) of a [z, y, x] mask; ``linear`` maps index (x, y, z) to mm."""
    index_xyz = np.argwhere(mask)[:, ::-1].astype(float)
    covariance = np.cov(index_xyz, rowvar=False) if len(index_xyz) > 1 else np.zeros((3, 3))
    variances = np.clip(np.linalg.eigvalsh(linear @ covariance @ linear.T), 0.0, None)[::-1]
    return tuple(2.0 * math.sqrt(5.0 * v) for v in variances)  # type: ignore[return-value]
