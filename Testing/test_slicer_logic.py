"""PediatricBoneSegLogic on a real vtkMRMLScene (slicer-core): outputs, geometry, rollback, and the
module's self-test running the same scenario (PediatricBoneSegLib.slicer.self_test)."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from slicer_harness import MRMLHarness, application_standins

from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint
from PediatricBoneSegLib.network import MultiDomainUNet, NetworkConfig
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.network.modelfile import ModelManifest, save_model
from PediatricBoneSegLib.progress import Cancelled, CancelToken
from PediatricBoneSegLib.slicer import self_test
from PediatricBoneSegLib.slicer.parameters import SegmentParameters
from PediatricBoneSegLib.slicer.scene_transaction import SceneTransaction
from PediatricBoneSegLib.slicer.volume import ijk_to_ras, image_from_volume_node

KNEE = get_joint("knee")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained three-joint model file, small enough for tests (its labels are arbitrary)."""
    torch.manual_seed(0)
    config = NetworkConfig(
        encoder="resnet18",
        decoder_channels=(32, 16, 16, 8, 8),
        classes_per_domain=tuple(get_joint(key).num_classes for key in JOINT_KEYS),
    )
    manifest = ModelManifest("tiny-test", "0", config, list(JOINT_KEYS), PreprocessingConfig(size=64))
    return save_model(tmp_path_factory.mktemp("model") / "tiny.safetensors", MultiDomainUNet(config), manifest)


@pytest.fixture(scope="module")
def knee():
    return self_test.knee_case()


@pytest.fixture
def harness():
    return MRMLHarness()


def test_known_labels_become_catalog_segments_surfaces_models_and_table(harness, knee):
    image, labels = knee
    result = self_test.run_truth_scenario(harness.logic(), image, labels, "knee")
    segmentation = result.segmentationNode.GetSegmentation()
    segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
    assert [s.GetName() for s in segments] == [bone.display_name for bone in KNEE.bones]
    assert [s.GetTerminology().split("~")[2].split("^")[1] for s in segments] == [b.snomed_code for b in KNEE.bones]
    assert segmentation.ContainsRepresentation("Closed surface")
    assert [m.GetName() for m in result.modelNodes] == [bone.display_name for bone in KNEE.bones]
    assert all(m.GetPolyData().GetNumberOfCells() > 100 for m in result.modelNodes)
    assert result.tableNode.GetTable().GetNumberOfRows() == len(KNEE.bones)
    assert result.segmentationNode.GetDisplayNode().GetPreferredDisplayRepresentationName3D() == "Closed surface"
    femur = result.measurements[0]
    assert femur.bone == "femur" and femur.mesh_volume_mm3 == pytest.approx(femur.voxel_volume_mm3, rel=0.1)


def test_result_check_catches_each_kind_of_wrong_output(harness, knee):
    image, labels = knee
    result = self_test.run_truth_scenario(harness.logic(), image, labels, "knee")
    volume = harness.scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
    segmentation = result.segmentationNode.GetSegmentation()
    segmentation.GetSegment("patella").SetName("Kneecap")
    segmentation.GetSegment("tibia").SetTerminology(get_joint("knee").bones[0].terminology)
    result.modelNodes[3].GetPolyData().Initialize()
    result.tableNode.GetTable().RemoveRow(0)
    shifted = volume.GetOrigin()
    volume.SetOrigin(shifted[0] + 1.0, shifted[1], shifted[2])
    problems = self_test.check_result(result, volume, "knee", labels, bones_required="all")
    expected = [
        "reference IJK-to-RAS",
        "segment 'tibia' terminology",
        "segment 'patella' named 'Kneecap', expected 'Patella'",
        "model 'Patella' for segment 'Kneecap'",
        "model 'Fibula' has an empty mesh",
        "morphometry table has 3 rows for 4 bones",
    ]
    assert len(problems) == len(expected) and all(text in problem for text, problem in zip(expected, problems))


def test_segment_path_with_a_model_file(harness, knee, tiny_model):
    image, _ = knee
    logic = harness.logic()
    messages = []
    volume = self_test.add_volume_node(harness.scene, image, "knee")
    result = logic.segment(volume, joint="knee", modelPath=tiny_model, progress=lambda f, m: messages.append((f, m)))
    assert result.joint == "knee" and not result.autoDetected and result.jointConfidence is None
    assert self_test.check_result(result, volume, "knee", bones_required="any") == []
    # an untrained network's labels are garbage: never reported as fine
    assert result.unreliableBones and set(result.boneQuality) == {bone.key for bone in KNEE.bones}
    assert f"Check: unreliable {', '.join(result.unreliableBones)}." in result.summary()
    fractions = [f for f, _ in messages]
    assert (
        fractions == sorted(fractions)
        and fractions[-1] >= 0.8
        and messages[-1][1] == "Creating the clinical measurements and their landmarks"
    )


def test_cancel_after_first_batch_and_injected_error_leave_the_scene_unchanged(harness, knee, tiny_model):
    """The same cases (and more) run in the shared scenario, see test_module_self_test_runs_the_shared_scenario."""
    logic = harness.logic()
    volume = self_test.add_volume_node(harness.scene, knee[0], "knee")
    state = self_test.scene_state(harness.scene)
    token, batches = CancelToken(), []

    def cancel_after_first_batch(fraction, message):
        if message.startswith("segmenting slice"):
            batches.append(message)
            token.cancel()

    with pytest.raises(Cancelled):
        logic.segment(
            volume, joint="knee", modelPath=tiny_model, progress=cancel_after_first_batch, cancel=token, batchSize=4
        )
    assert len(batches) == 1 and batches[0].startswith("segmenting slice 4/")
    assert self_test.scene_state(harness.scene) == state

    def fail_while_building_models(fraction, message):
        if message == "Creating the morphometry table":  # segmentation and models already exist at this point
            assert harness.scene.GetFirstNodeByClass("vtkMRMLModelNode") is not None
            raise self_test.InjectedError("injected")

    with pytest.raises(self_test.InjectedError):
        logic.segment(volume, joint="knee", modelPath=tiny_model, progress=fail_while_building_models)
    assert self_test.scene_state(harness.scene) == state


def test_scene_transaction_removes_nodes_display_nodes_and_folders(harness):
    before = self_test.scene_state(harness.scene)
    with pytest.raises(RuntimeError), SceneTransaction(harness.scene):
        model = harness.scene.AddNewNodeByClass("vtkMRMLModelNode", "m")
        model.CreateDefaultDisplayNodes()
        folder = harness.subjectHierarchy.CreateFolderItem(harness.subjectHierarchy.GetSceneItemID(), "f")
        harness.subjectHierarchy.CreateItem(folder, model)
        assert self_test.scene_state(harness.scene) != before
        raise RuntimeError("boom")
    assert self_test.scene_state(harness.scene) == before


def test_volume_node_geometry_is_exact_for_an_oblique_volume(harness):
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.4, 0.5, 3.0))
    image.SetOrigin((12.0, -7.0, 30.0))
    angle = np.radians(20)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    image.SetDirection(tuple((rotation @ np.diag([1, -1, 1])).ravel()))
    volume = self_test.add_volume_node(harness.scene, image, "oblique")
    index = (5, 1, 2)
    lps = np.array(image.TransformIndexToPhysicalPoint(index))
    ras = ijk_to_ras(volume) @ np.array([*index, 1.0])
    assert np.allclose(ras[:3], lps * [-1, -1, 1])
    back = image_from_volume_node(volume)
    assert np.array_equal(sitk.GetArrayFromImage(back), array) and back.GetPixelID() == image.GetPixelID()
    assert np.allclose(back.GetOrigin(), image.GetOrigin()) and np.allclose(back.GetSpacing(), image.GetSpacing())
    assert np.allclose(back.GetDirection(), image.GetDirection())


def test_bad_volume_and_export_folder_are_refused_before_any_node(harness, knee, tiny_model, tmp_path):
    logic = harness.logic()
    empty = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    count = harness.scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="'empty' has no voxel data"):
        logic.segment(empty, joint="knee", modelPath=tiny_model)
    volume = self_test.add_volume_node(harness.scene, knee[0], "knee")
    count = harness.scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="export folder .*missing does not exist"):
        logic.segment(volume, joint="knee", modelPath=tiny_model, exportFolder=tmp_path / "missing")
    assert harness.scene.GetNumberOfNodes() == count and not (tmp_path / "missing").exists()


def test_export_writes_a_new_case_folder_each_run(harness, knee, tmp_path):
    image, labels = knee
    logic = harness.logic()
    volume = self_test.add_volume_node(harness.scene, image, "knee 1/left")
    truth = self_test.truth_result(labels, "knee")
    first = logic.createOutputNodes(volume, truth, exportFolder=tmp_path)
    second = logic.createOutputNodes(volume, truth, exportFolder=tmp_path, surfaces=False)
    assert (first.exportFolder.name, second.exportFolder.name) == ("knee_1_left", "knee_1_left_2")
    assert {p.name for p in first.exportFolder.iterdir()} >= {"femur.stl", "morphometry.csv", "report.json"}
    assert not list(second.exportFolder.glob("*.stl")) and second.modelNodes == []
    assert "Files written to" in first.summary() and first.summary().startswith("Knee: 4 bones segmented.")


def test_parameters_explain_problems_and_map_to_logic_arguments(tmp_path):
    assert SegmentParameters().problems() == ["Select an input volume."]
    parameters = SegmentParameters(
        inputVolume=None,
        joint="Shoulder",
        useBundledModel=False,
        modelPath=tmp_path / "none.safetensors",
        device="GPU",
        smoothing=1.5,
        export=True,
        exportFolder=None,
    )
    no_gpu = [] if torch.cuda.is_available() else ["Device cuda was requested but no CUDA GPU is available to PyTorch."]
    assert parameters.problems()[1:] == [  # the panel's own problems, then the case options' validation
        "Export folder not found: (none selected).",
        *no_gpu,
        f"Model file {tmp_path / 'none.safetensors'} not found.",
        "Smoothing must be between 0 and 1, got 1.5.",
    ]
    unselected = SegmentParameters(useBundledModel=False, modelPath=Path(""), inputVolume=None)
    assert unselected.problems()[1:] == ["Model file not found: (none selected)."]
    arguments = parameters.logicArguments()
    assert (arguments["joint"], arguments["device"], arguments["exportFolder"]) == ("shoulder", "cuda", "None")
    assert SegmentParameters().logicArguments()["modelPath"] is None


def test_module_self_test_runs_the_shared_scenario(harness, tiny_model):
    with application_standins(harness) as module:
        info = types.SimpleNamespace()
        module.PediatricBoneSeg(info)
        assert info.categories == ["Segmentation"] and "Boutillon" in info.acknowledgementText
        test = module.PediatricBoneSegTest()
        test.modelPath, test.requireBones = tiny_model, False
        test.runTest()
    assert test.messages[0] == "Reading the knee phantom" and test.messages[-1] == "Segment bones scenario passed"
    assert harness.scene.GetFirstNodeByName("knee phantom (truth) bones") is not None


def test_rollback_scenario_fails_when_the_scene_is_not_restored(harness, knee, tiny_model, monkeypatch):
    monkeypatch.setattr(SceneTransaction, "rollback", lambda self: None)  # a logic that forgets to clean up
    with pytest.raises(AssertionError) as failure:
        self_test.run_rollback_scenarios(harness.logic(), *knee, "knee", tiny_model)
    report = str(failure.value)
    assert "cancel while creating models: the scene changed" in report
    assert "error while creating the table: the scene changed" in report and "first batch:" not in report


def test_clinical_measurements_become_a_table_and_markups_on_their_landmarks(harness, knee):
    """One table row per clinical measure (value or why not); each measured value's landmarks are
    real Markups nodes (line: 2 points, angle: 3, fiducial: 1) at the landmarks' RAS positions."""
    image, labels = knee
    result = self_test.run_truth_scenario(harness.logic(), image, labels, "knee")
    from PediatricBoneSegLib.pipeline.measurements import measure

    expected = measure(labels, "knee")
    table = result.clinicalTableNode.GetTable()
    assert table.GetNumberOfRows() == len(expected)
    results = table.GetColumnByName("Result")
    assert [results.GetValue(i) for i in range(table.GetNumberOfRows())] == [m.text for m in expected]
    measured = [m for m in expected if m.measurable and m.landmarks]
    shown = [(name, np.atleast_2d(p)) for m in measured for name, p in m.landmarks.items()]
    distinct = [
        s for i, s in enumerate(shown) if not any(s[0] == t[0] and np.array_equal(s[1], t[1]) for t in shown[:i])
    ]
    assert measured and len(result.landmarkNodes) == len(distinct)  # one node per distinct landmark set
    kind = {1: "vtkMRMLMarkupsFiducialNode", 2: "vtkMRMLMarkupsLineNode", 3: "vtkMRMLMarkupsAngleNode"}
    for (name, points), node in zip(distinct, result.landmarkNodes):
        assert node.GetAttribute("PediatricBoneSeg.landmark") == name
        assert node.GetClassName() == kind.get(len(points), "vtkMRMLMarkupsFiducialNode")
        assert node.GetNumberOfControlPoints() == len(points)
        ras = np.array([node.GetNthControlPointPosition(i) for i in range(len(points))])
        np.testing.assert_allclose(ras, points * [-1, -1, 1], atol=1e-6)
    sh = harness.scene.GetSubjectHierarchyNode()
    assert all(sh.GetItemParent(sh.GetItemByDataNode(n)) == result.landmarksFolderItemID for n in result.landmarkNodes)
