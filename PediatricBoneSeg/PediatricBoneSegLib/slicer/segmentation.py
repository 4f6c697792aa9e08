"""A bone label map -> an MRML segmentation node: one segment per bone present, with the catalog's
name, color and terminology, the input volume's reference geometry and (optionally) the case
workflow's closed surfaces as the segments' closed-surface representation, shown in 3D. Slicer's
own labelmap-to-surface conversion is not used: the command line's files and the scene hold the
same meshes.

Segment IDs are the bones' catalog keys (``segmentation.GetSegment("femur")``). Works on the
scene, nodes and the segmentations module logic through their methods (no ``slicer`` import).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk
from vtkmodules.vtkCommonCore import vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkPolyData

from ..catalog import Joint
from .volume import vtk_image_from_array

CLOSED_SURFACE = "Closed surface"  # vtkSegmentationConverter's representation name


def present_labels(labels: sitk.Image, joint: Joint) -> list[int]:
    """Label values (1-based bone positions) that occur in ``labels``; ValueError on a value that
    is not a bone of ``joint``."""
    values = np.unique(sitk.GetArrayViewFromImage(labels))
    unknown = [int(v) for v in values if v > len(joint.bones)]
    if unknown:
        raise ValueError(f"label values {unknown} are not bones of the {joint.key} (1..{len(joint.bones)})")
    return [int(v) for v in values if v > 0]


def add_segmentation_node(
    scene: Any,
    segmentations_logic: Any,
    volume_node: Any,
    labels: sitk.Image,
    joint: Joint,
    name: str,
    closed_surfaces: dict[str, vtkPolyData] | None = None,
) -> Any:
    """Add and return a vtkMRMLSegmentationNode for ``labels`` (UInt8 on ``volume_node``'s grid).

    ``closed_surfaces``: bone key -> mesh in the volume's RAS frame, one per bone present (None:
    no closed surfaces). The node is placed under the volume's parent transform, like the volume."""
    array = sitk.GetArrayViewFromImage(labels)
    dimensions = volume_node.GetImageData().GetDimensions()
    if tuple(array.shape[::-1]) != tuple(dimensions):
        raise ValueError(f"label map size {array.shape[::-1]} differs from the volume's {dimensions}")
    present = present_labels(labels, joint)

    # A label map node outside the scene carries the volume's exact geometry into the import.
    labelmap_node = scene.CreateNodeByClass("vtkMRMLLabelMapVolumeNode")
    labelmap_node.UnRegister(None)  # Python holds the only reference
    labelmap_node.SetAndObserveImageData(vtk_image_from_array(array.astype(np.uint8)))
    labelmap_node.CopyOrientation(volume_node)

    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segmentation_node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    segment_ids = vtkStringArray()
    for bone in joint.bones:  # label value v goes to the (v-1)-th ID
        segment_ids.InsertNextValue(bone.key)
    if not segmentations_logic.ImportLabelmapToSegmentationNode(labelmap_node, segmentation_node, segment_ids):
        raise RuntimeError(f"Slicer could not import the {joint.key} label map into a segmentation")

    segmentation = segmentation_node.GetSegmentation()
    for value, bone in enumerate(joint.bones, start=1):
        if value not in present:
            segmentation.RemoveSegment(bone.key)
            continue
        segment = segmentation.GetSegment(bone.key)
        segment.SetName(bone.display_name)
        segment.SetColor(*bone.color_float)
        segment.SetTerminology(bone.terminology)

    if closed_surfaces and present:
        for value in present:
            bone = joint.bones[value - 1]
            if bone.key not in closed_surfaces:
                raise ValueError(f"no closed surface for the {bone.key}, which the labels hold")
            surface = vtkPolyData()
            surface.DeepCopy(closed_surfaces[bone.key])
            segmentation.GetSegment(bone.key).AddRepresentation(CLOSED_SURFACE, surface)
        display = segmentation_node.GetDisplayNode()
        display.SetPreferredDisplayRepresentationName3D(CLOSED_SURFACE)
        display.SetVisibility3D(True)
    return segmentation_node


def segment_ids(segmentation_node: Any) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
