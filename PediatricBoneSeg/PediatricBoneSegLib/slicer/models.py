"""Surface model nodes from a segmentation's closed surfaces (the case workflow's meshes, see
``lps_to_ras``): one vtkMRMLModelNode per segment, named and colored like it, grouped in a
subject-hierarchy folder.

The segmentation already shows the same surfaces in 3D, so the models start hidden (two coincident
surfaces would flicker); they are there to be exported, measured or edited in the Models module.
Works on the scene and nodes through their methods (no ``slicer`` import).
"""

from __future__ import annotations

from typing import Any

from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkCommonTransforms import vtkTransform
from vtkmodules.vtkFiltersCore import vtkPolyDataNormals
from vtkmodules.vtkFiltersGeneral import vtkTransformPolyDataFilter

from .hierarchy import create_folder, place_node
from .segmentation import segment_ids


def closed_surface(segmentation_node: Any, segment_id: str) -> vtkPolyData:
    """A copy of the segment's closed surface (segmentation coordinates, RAS millimetres)."""
    surface = vtkPolyData()
    if not segmentation_node.GetClosedSurfaceRepresentation(segment_id, surface):
        raise RuntimeError(f"segment {segment_id!r} has no closed-surface representation")
    copy = vtkPolyData()
    copy.DeepCopy(surface)
    return copy


def add_bone_models(scene: Any, segmentation_node: Any, folder_name: str, parent_item: int) -> tuple[int, list[Any]]:
    """Add one model node per segment under a new folder item; returns (folder item ID, models)."""
    folder = create_folder(scene, folder_name, parent_item)
    segmentation = segmentation_node.GetSegmentation()
    models = []
    for segment_id in segment_ids(segmentation_node):
        segment = segmentation.GetSegment(segment_id)
        model = scene.AddNewNodeByClass("vtkMRMLModelNode", segment.GetName())
        model.SetAndObservePolyData(closed_surface(segmentation_node, segment_id))
        model.SetAndObserveTransformNodeID(segmentation_node.GetTransformNodeID())
        model.CreateDefaultDisplayNodes()
        display = model.GetDisplayNode()
        display.SetColor(*segment.GetColor())
        display.SetVisibility(False)
        place_node(scene, model, folder)
        models.append(model)
    return folder, models


def lps_to_ras(surface: vtkPolyData) -> vtkPolyData:
    """A mesh in patient LPS millimetres (the files' frame) in Slicer's RAS: x and y negated."""
    flip = vtkTransform()
    flip.Scale(-1.0, -1.0, 1.0)
    moved = vtkTransformPolyDataFilter()
    moved.SetInputData(surface)
    moved.SetTransform(flip)
    # A mirror (determinant -1) turns triangles inside out; re-orienting restores outward normals.
    normals = vtkPolyDataNormals()
    normals.SetInputConnection(moved.GetOutputPort())
    normals.SplittingOff()  # splitting would duplicate points on sharp edges and open the mesh
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()
    normals.Update()
    result = vtkPolyData()
    result.DeepCopy(normals.GetOutput())
    return result
