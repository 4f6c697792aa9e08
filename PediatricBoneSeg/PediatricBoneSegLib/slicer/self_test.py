"""The Slicer module's self-test scenario, run unchanged by the module's Test class (inside Slicer)
and by pytest (on slicer-core's MRML, see Testing/slicer_harness.py).

A small knee phantom shipped with the package goes into the scene; the logic segments it; every
output is checked against the catalog and the input (segment names, colors, SNOMED terminology,
closed surfaces, one closed model per bone, one table row per bone, reference geometry, voxel
counts). Cancelling and failing runs must leave the scene's nodes and subject-hierarchy items exactly as they were.
Each ``run_*`` function raises AssertionError with every problem found.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from vtkmodules.vtkCommonCore import vtkIdList
from vtkmodules.vtkFiltersCore import vtkFeatureEdges

from ..catalog import get_joint
from ..progress import Cancelled, CancelToken
from .hierarchy import place_node, subject_hierarchy
from .scene_transaction import node_ids
from .segmentation import CLOSED_SURFACE, segment_ids
from .volume import ijk_to_ras, update_volume_node_from_image

REFERENCE_GEOMETRY = "Reference image geometry"  # vtkSegmentationConverter's parameter name
Log = Callable[[str], Any]


class InjectedError(RuntimeError):
    """Raised on purpose by the scenario's progress callback to simulate a failing step."""


def knee_case() -> tuple[sitk.Image, sitk.Image]:
    """The shipped small knee phantom (Float32, as the module reads volumes) and its true labels."""
    from ..resources import self_test_case_paths

    image_path, labels_path = self_test_case_paths()
    return sitk.ReadImage(str(image_path), sitk.sitkFloat32), sitk.ReadImage(str(labels_path), sitk.sitkUInt8)


def add_volume_node(scene: Any, image: sitk.Image, name: str) -> Any:
    """A scalar volume node holding ``image`` under the scene's subject-hierarchy root."""
    volume_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    update_volume_node_from_image(volume_node, image)
    place_node(scene, volume_node, subject_hierarchy(scene).GetSceneItemID())
    return volume_node


def scene_state(scene: Any) -> tuple[list[str], list[int]]:
    """Node IDs and subject-hierarchy item IDs of the scene: equal states mean nothing was added."""
    sh_node = subject_hierarchy(scene)
    items = vtkIdList()
    sh_node.GetItemChildren(sh_node.GetSceneItemID(), items, True)
    return node_ids(scene), sorted(items.GetId(index) for index in range(items.GetNumberOfIds()))


def truth_result(labels: sitk.Image, joint: str) -> Any:
    """An InferenceResult carrying known labels, to check the node-building half of the logic."""
    from ..pipeline.results import InferenceResult

    return InferenceResult(
        labels=labels,
        joint=joint,
        auto_detected=False,
        joint_confidence=None,
        warnings=[],
        timings={},
        model_name="ground truth",
        model_version="phantom",
    )


def check_result(
    result: Any, volume_node: Any, joint: str, labels: sitk.Image | None = None, bones_required: str = "some"
) -> list[str]:
    """Every way ``result`` differs from what the module promises (empty when it keeps them all).

    ``labels``: the label map the result was built from (voxel counts are compared per bone).
    ``bones_required``: "all" bones of the joint, "some" (at least one) or "any" number."""
    problems: list[str] = []
    spec = get_joint(joint)
    if result.joint != spec.key:
        problems.append(f"joint {result.joint!r}, expected {spec.key!r}")
    node = result.segmentationNode
    segmentation = node.GetSegmentation()
    ids = segment_ids(node)
    bones = {bone.key: bone for bone in spec.bones}
    problems += _check_geometry(segmentation.GetConversionParameter(REFERENCE_GEOMETRY), volume_node)
    if bones_required == "some" and not ids:
        problems.append("the segmentation has no segment")
    if bones_required == "all" and set(ids) != set(bones):
        problems.append(f"segments {ids}, expected every {spec.key} bone {list(bones)}")
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=len(bones) + 1) if labels else None
    for segment_id in ids:
        bone = bones.get(segment_id)
        if bone is None:
            problems.append(f"segment {segment_id!r} is not a {spec.key} bone")
            continue
        segment = segmentation.GetSegment(segment_id)
        if segment.GetName() != bone.display_name:
            problems.append(f"segment {segment_id!r} named {segment.GetName()!r}, expected {bone.display_name!r}")
        if not np.allclose(segment.GetColor(), bone.color_float, atol=1e-6):
            problems.append(f"segment {segment_id!r} color {segment.GetColor()}, expected {bone.color_float}")
        terminology = segment.GetTerminology()
        if terminology != bone.terminology or f"SCT^{bone.snomed_code}^" not in terminology:
            problems.append(f"segment {segment_id!r} terminology {terminology!r}, expected {bone.terminology!r}")
        if counts is not None:
            voxels = _segment_voxel_count(node, segment_id)
            expected = int(counts[spec.label_of(segment_id)])
            if voxels != expected:
                problems.append(f"segment {segment_id!r} has {voxels} voxels, the label map {expected}")
    if ids and not segmentation.ContainsRepresentation(CLOSED_SURFACE):
        problems.append("no closed-surface representation")
    problems += _check_models(result, segmentation, ids)
    problems += _check_table(result, segmentation, ids)
    return problems


def _check_geometry(serialized: str, volume_node: Any) -> list[str]:
    """The segmentation's reference geometry ('m00;...;m33;i0;i1;j0;j1;k0;k1;') vs the volume's."""
    values = [float(v) for v in serialized.split(";") if v]
    dimensions = volume_node.GetImageData().GetDimensions()
    expected_extent = [0, dimensions[0] - 1, 0, dimensions[1] - 1, 0, dimensions[2] - 1]
    if len(values) != 22:
        return [f"reference geometry {serialized!r} is not a serialized image geometry"]
    problems = []
    if not np.allclose(np.reshape(values[:16], (4, 4)), ijk_to_ras(volume_node), atol=1e-6):
        problems.append(f"reference IJK-to-RAS {values[:16]} differs from the input volume's")
    if [int(v) for v in values[16:]] != expected_extent:
        problems.append(f"reference extent {values[16:]} differs from the input's {expected_extent}")
    return problems


def _segment_voxel_count(segmentation_node: Any, segment_id: str) -> int:
    from vtkmodules.util import numpy_support

    labelmap = segmentation_node.GetBinaryLabelmapInternalRepresentation(segment_id)
    array = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    return int(np.count_nonzero(array == segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()))


def _check_models(result: Any, segmentation: Any, ids: list[str]) -> list[str]:
    problems = []
    models = result.modelNodes
    if len(models) != len(ids):
        return [f"{len(models)} model nodes for {len(ids)} segments"]
    sh_node = subject_hierarchy(result.segmentationNode.GetScene())
    for model, segment_id in zip(models, ids):
        segment = segmentation.GetSegment(segment_id)
        if model.GetName() != segment.GetName():
            problems.append(f"model {model.GetName()!r} for segment {segment.GetName()!r}")
        if not np.allclose(model.GetDisplayNode().GetColor(), segment.GetColor(), atol=1e-6):
            problems.append(f"model {model.GetName()!r} colored unlike its segment")
        if sh_node.GetItemParent(sh_node.GetItemByDataNode(model)) != result.modelsFolderItemID:
            problems.append(f"model {model.GetName()!r} is not in the models folder")
        surface = model.GetPolyData()
        if surface is None or surface.GetNumberOfCells() == 0:
            problems.append(f"model {model.GetName()!r} has an empty mesh")
            continue
        edges = vtkFeatureEdges()
        edges.SetInputData(surface)
        edges.BoundaryEdgesOn()
        edges.NonManifoldEdgesOn()
        edges.FeatureEdgesOff()
        edges.ManifoldEdgesOff()
        edges.Update()
        open_edges = edges.GetOutput().GetNumberOfCells()
        if open_edges:
            problems.append(f"model {model.GetName()!r} is not closed ({open_edges} open edges)")
    return problems


def _check_table(result: Any, segmentation: Any, ids: list[str]) -> list[str]:
    table = result.tableNode.GetTable()
    if table.GetNumberOfRows() != len(ids):
        return [f"morphometry table has {table.GetNumberOfRows()} rows for {len(ids)} bones"]
    names = {segmentation.GetSegment(segment_id).GetName() for segment_id in ids}
    first = {table.GetValue(row, 0).ToString() for row in range(table.GetNumberOfRows())}
    keys = set(ids)
    if first != names and first != keys:
        return [f"morphometry table rows {sorted(first)} are not the bones {sorted(names)}"]
    return []


def _require(problems: list[str], what: str) -> None:
    if problems:
        raise AssertionError(f"{what}:\n- " + "\n- ".join(problems))


def run_truth_scenario(logic: Any, image: sitk.Image, labels: sitk.Image, joint: str) -> Any:
    """Known labels -> nodes through the logic's node builder; every bone must be there, exactly."""
    volume_node = add_volume_node(logic.scene, image, f"{joint} phantom (truth)")
    result = logic.createOutputNodes(volume_node, truth_result(labels, joint), smoothing=0.5)
    _require(check_result(result, volume_node, joint, labels, bones_required="all"), "outputs of known labels")
    return result


def run_segment_scenario(
    logic: Any, image: sitk.Image, joint: str, model_path: str | Path | None, require_bones: bool
) -> Any:
    """The full ``logic.segment`` path on the phantom (``require_bones``: with a trained model)."""
    volume_node = add_volume_node(logic.scene, image, f"{joint} phantom")
    result = logic.segment(volume_node, joint=joint, modelPath=model_path, device="cpu")
    required = "some" if require_bones else "any"
    _require(check_result(result, volume_node, joint, bones_required=required), "outputs of logic.segment")
    return result


def run_rollback_scenarios(
    logic: Any, image: sitk.Image, labels: sitk.Image, joint: str, model_path: str | Path | None
) -> None:
    """Each of these leaves the scene's nodes and subject-hierarchy items as they were: a cancel
    after the first slice batch and a missing model file (``logic.segment``); a cancel while the
    models are built and an error injected while the table is created, after the segmentation and
    the models exist (the node-building half, fed the true labels so no network run is repeated)."""
    volume_node = add_volume_node(logic.scene, image, f"{joint} phantom (rollback)")
    batches: list[str] = []

    def segment(progress: Any, token: CancelToken, path: Any = model_path) -> None:
        logic.segment(
            volume_node, joint=joint, modelPath=path, device="cpu", progress=progress, cancel=token, batchSize=4
        )

    def build(progress: Any, token: CancelToken) -> None:
        logic.createOutputNodes(volume_node, truth_result(labels, joint), progress=progress, cancel=token)

    def cancel_after_first_batch(token: CancelToken) -> None:
        def progress(fraction: float, message: str) -> None:
            if message.startswith("segmenting slice"):
                batches.append(message)
                token.cancel()

        segment(progress, token)

    def missing_model_file(token: CancelToken) -> None:
        segment(None, token, Path("no-such-dir", "missing.safetensors"))

    def cancel_while_creating_models(token: CancelToken) -> None:
        build(lambda fraction, message: message.startswith("Creating the bone surface") and token.cancel(), token)

    def error_while_creating_the_table(token: CancelToken) -> None:
        def progress(fraction: float, message: str) -> None:
            if message.startswith("Creating the morphometry table"):
                raise InjectedError("injected failure while creating the morphometry table")

        build(progress, token)

    cases = [
        (cancel_after_first_batch, Cancelled),
        (missing_model_file, (ValueError, OSError)),
        (cancel_while_creating_models, Cancelled),
        (error_while_creating_the_table, InjectedError),
    ]
    problems = []
    for run, expected in cases:
        name = run.__name__.replace("_", " ")
        before = scene_state(logic.scene)
        try:
            run(CancelToken())
            problems.append(f"{name}: the run succeeded instead of raising {expected}")
        except expected:
            pass
        after = scene_state(logic.scene)
        if after != before:
            problems.append(f"{name}: the scene changed from {before} to {after}")
    if len(batches) != 1:
        problems.append(f"the cancelled run reported {batches} instead of stopping after the first batch")
    _require(problems, "failed or cancelled runs")


def run_all(logic: Any, model_path: str | Path | None = None, require_bones: bool = True, log: Log = print) -> None:
    """The whole self-test: truth outputs, the real segment path, then the rollback cases."""
    joint = "knee"
    log("Reading the knee phantom")
    image, labels = knee_case()
    log("Building the outputs of the true labels")
    run_truth_scenario(logic, image, labels, joint)
    log("Segmenting the phantom with the model")
    run_segment_scenario(logic, image, joint, model_path, require_bones)
    log("Cancelling and failing runs")
    run_rollback_scenarios(logic, image, labels, joint, model_path)
    log("Segment bones scenario passed")
