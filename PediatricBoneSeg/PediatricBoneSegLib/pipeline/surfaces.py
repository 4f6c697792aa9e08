"""Closed bone surfaces from a label volume with VTK, in patient LPS millimetres.

Per bone: discrete flying edges on the bone's padded bounding box (VTK's multi-threaded SMP path:
``use_vtk_threads``), windowed-sinc smoothing,
optional quadric decimation (off by default, as in Slicer's closed-surface conversion; kept only if
the mesh stays closed), then a volume correction: an isosurface
cuts the corners of the voxel staircase, which on thin bones and thick slices loses several percent
of the segmented volume, so the vertices are moved along their normals by the (sub-voxel) distance
that restores the voxel volume. Meshes are built in the image's index axes scaled by the spacing,
then rotated by the direction cosines and moved to the origin, so oblique volumes give surfaces at
their true physical position. Outward normals are computed once per bone (the costly step) and
carried through the offset and the transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import SimpleITK as sitk
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR, vtkPoints, vtkSMPTools
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkCommonTransforms import vtkTransform
from vtkmodules.vtkFiltersCore import (
    vtkFeatureEdges,
    vtkMassProperties,
    vtkPolyDataNormals,
    vtkQuadricDecimation,
    vtkReverseSense,
    vtkWindowedSincPolyDataFilter,
)
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D, vtkTransformPolyDataFilter

from ..catalog import get_joint
from ..host import physical_cores
from ..labelmaps import bone_boxes

SMOOTHING_PASS_BAND = 0.1  # windowed-sinc pass band: lower smooths more


def bone_surfaces(
    labels: sitk.Image,
    joint: str,
    smoothing_iterations: int = 15,
    decimation: float = 0.0,
    boxes: Sequence[tuple[slice, ...] | None] | None = None,
) -> dict[str, vtkPolyData]:
    """``labels``: the joint's label volume. Returns bone key -> closed triangle mesh (LPS mm),
    skipping absent bones. ``decimation``: fraction of triangles to remove (0 keeps all);
    ``boxes``: each bone's bounding box (``labelmaps.bone_boxes``) when already known. Bones are
    meshed in parallel threads (VTK releases the GIL), the largest first."""
    spec = get_joint(joint)
    use_vtk_threads()
    array = sitk.GetArrayViewFromImage(labels)
    boxes = boxes if boxes is not None else bone_boxes(array, spec.num_classes)
    spacing = np.asarray(labels.GetSpacing(), dtype=float)
    to_patient = _patient_transform(labels)
    present = [(value, box) for value, box in enumerate(boxes, start=1) if box is not None]

    def build(job: tuple[int, tuple[slice, ...]]) -> vtkPolyData:
        value, box = job
        mask = np.pad(array[box] == value, 1).astype(np.uint8)  # zero border: the surface closes
        corner_xyz = np.array([s.start - 1 for s in box][::-1], dtype=float)
        mesh = _surface(mask, spacing, corner_xyz * spacing, smoothing_iterations, decimation)
        mesh = _with_volume(mesh, float(mask.sum()) * float(np.prod(spacing)), float(spacing.min()))
        return _transformed(mesh, to_patient)

    largest_first = sorted(present, key=lambda job: -np.prod([s.stop - s.start for s in job[1]]))
    with ThreadPoolExecutor(max_workers=max(1, min(len(present), physical_cores()))) as pool:
        meshes = {value: pool.submit(build, (value, box)) for value, box in largest_first}
    return {spec.bones[value - 1].key: meshes[value].result() for value, _ in present}


def use_vtk_threads() -> None:
    """Let VTK's multi-threaded filters (flying edges, windowed-sinc smoothing, normals, transforms)
    use threads: VTK's wheels start on its sequential SMP backend. A VTK built with TBB or OpenMP
    (Slicer's) keeps its own backend."""
    if vtkSMPTools.GetBackend() == "Sequential":
        vtkSMPTools.SetBackend("STDThread")


def open_edge_count(mesh: vtkPolyData) -> int:
    """Boundary plus non-manifold edges: 0 for a closed (watertight) surface."""
    edges = vtkFeatureEdges()
    edges.SetInputData(mesh)
    edges.BoundaryEdgesOn()
    edges.NonManifoldEdgesOn()
    edges.FeatureEdgesOff()
    edges.ManifoldEdgesOff()
    edges.Update()
    return int(edges.GetOutput().GetNumberOfCells())


def _surface(
    mask: np.ndarray, spacing_xyz: np.ndarray, origin: np.ndarray, iterations: int, decimation: float
) -> vtkPolyData:
    """``mask``: [z, y, x] uint8 (1 inside). Mesh in the unrotated, spacing-scaled index frame."""
    image = vtkImageData()
    image.SetDimensions(*mask.shape[::-1])
    image.SetSpacing(*spacing_xyz)
    image.SetOrigin(*origin)
    image.GetPointData().SetScalars(numpy_to_vtk(mask.ravel(), deep=True, array_type=VTK_UNSIGNED_CHAR))
    contour = vtkDiscreteFlyingEdges3D()
    contour.SetInputData(image)
    contour.SetValue(0, 1)
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    contour.Update()
    mesh = contour.GetOutput()
    if iterations > 0:
        smoother = vtkWindowedSincPolyDataFilter()
        smoother.SetInputData(mesh)
        smoother.SetNumberOfIterations(iterations)
        smoother.SetPassBand(SMOOTHING_PASS_BAND)
        smoother.BoundarySmoothingOff()
        smoother.FeatureEdgeSmoothingOff()
        smoother.NonManifoldSmoothingOn()
        smoother.NormalizeCoordinatesOn()
        smoother.Update()
        mesh = smoother.GetOutput()
    if decimation > 0:
        decimator = vtkQuadricDecimation()
        decimator.SetInputData(mesh)
        decimator.SetTargetReduction(decimation)
        decimator.VolumePreservationOn()
        decimator.Update()
        if open_edge_count(decimator.GetOutput()) == 0:  # never trade watertightness for size
            mesh = decimator.GetOutput()
    return mesh


def _with_volume(mesh: vtkPolyData, target_mm3: float, voxel_mm: float) -> vtkPolyData:
    """Outward-normal mesh whose vertices are offset along their normals so the enclosed volume is
    ``target_mm3`` (first order: volume change = area x offset; two passes with the same normals,
    which a sub-voxel offset does not change; offset at most half a voxel in all)."""
    oriented = _outward_normals(mesh)
    points = vtk_to_numpy(oriented.GetPoints().GetData()).astype(float)
    normals = vtk_to_numpy(oriented.GetPointData().GetNormals())
    properties = vtkMassProperties()
    properties.SetInputData(oriented)
    total = 0.0
    for _ in range(2):
        properties.Modified()
        properties.Update()
        step = (target_mm3 - properties.GetVolume()) / max(properties.GetSurfaceArea(), 1e-9)
        total = float(np.clip(total + step, -voxel_mm / 2, voxel_mm / 2))
        moved = vtkPoints()
        moved.SetData(numpy_to_vtk(points + total * normals, deep=True))
        oriented.SetPoints(moved)
    return oriented


def _outward_normals(mesh: vtkPolyData) -> vtkPolyData:
    """Point normals, consistently oriented outward (triangles re-wound to match)."""
    normals = vtkPolyDataNormals()
    normals.SetInputData(mesh)
    normals.SplittingOff()  # splitting duplicates points along sharp edges and opens the mesh
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()
    normals.ComputeCellNormalsOff()
    normals.Update()
    result = vtkPolyData()
    result.DeepCopy(normals.GetOutput())
    return result


def _patient_transform(image: sitk.Image) -> vtkTransform:
    """Spacing-scaled index frame -> LPS: rotate by the direction cosines, move to the origin."""
    matrix = vtkMatrix4x4()
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    for row in range(3):
        for column in range(3):
            matrix.SetElement(row, column, direction[row, column])
        matrix.SetElement(row, 3, image.GetOrigin()[row])
    transform = vtkTransform()
    transform.SetMatrix(matrix)
    return transform


def _transformed(mesh: vtkPolyData, transform: vtkTransform) -> vtkPolyData:
    """``mesh`` (with outward point normals) moved to LPS; the normals are rotated with it. A
    mirroring direction matrix reverses the triangles' winding, so it is reversed back."""
    moved = vtkTransformPolyDataFilter()
    moved.SetInputData(mesh)
    moved.SetTransform(transform)
    moved.Update()
    result = moved.GetOutput()
    if transform.GetMatrix().Determinant() < 0:
        reverse = vtkReverseSense()
        reverse.SetInputData(result)
        reverse.ReverseCellsOn()
        reverse.ReverseNormalsOff()  # a rotation-reflection maps outward normals to outward normals
        reverse.Update()
        result = reverse.GetOutput()
    return result
