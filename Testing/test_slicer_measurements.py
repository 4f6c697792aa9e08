"""Clinical-measurement Markups a reader can move, on a real vtkMRMLScene (slicer-core): one Markups
node per distinct landmark set, shared by the measures that read it; moving a control point
rewrites the rows of the measures that are functions of its points with the pipeline's own point
function (``pipeline.measurements.remeasure``), an undo restores them, the other rows and the
display-only Markups stay as they are, and the observers go with the nodes. The links survive a
scene written to disk (.mrml, .mrk.json, .tsv, .nrrd) and loaded into a fresh scene, and the points
are read in the volume's frame whatever transform the volume and the Markups sit under.

The moved-point tests use hand-placed knee landmarks (every knee measure, values from the point
functions), so they do not depend on what the landmark finders find in the shipped case."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import types
import weakref
from pathlib import Path

import numpy as np
import pytest
import slicer
from slicer_harness import MRMLHarness, application_standins
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

from PediatricBoneSegLib.pipeline.measurements import (
    Measurement,
    definitions,
    measure,
    physis,
    point_function,
    remeasure,
)
from PediatricBoneSegLib.slicer import self_test
from PediatricBoneSegLib.slicer.measurements import (
    LANDMARK_ATTRIBUTE,
    LANDMARKS_DISPLAY,
    LANDMARKS_MOVABLE,
    LANDMARKS_REMOVED,
    MEASURES_ATTRIBUTE,
    ROW_ATTRIBUTE,
    SOURCE_EDITED,
    SOURCE_PIPELINE,
    add_measurement_nodes,
    restore_landmark_links,
)
from PediatricBoneSegLib.slicer.scene_transaction import SceneTransaction

RAS = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS
ROOT = Path(__file__).resolve().parent.parent
# A right knee, LPS mm (medial +x, anterior -y): condyles (medial, lateral), trochlea as shown
# (lateral summit, groove, medial summit), tubercle, patella, epicondyles, plateau.
HAND_LANDMARKS = {
    "posterior_condyles": np.array([[30.0, 20.0, 0.0], [-10.0, 20.0, 0.0]]),
    "trochlea": np.array([[-5.0, -12.0, 5.0], [10.0, -10.0, 5.0], [25.0, -13.0, 5.0]]),
    "tubercle": np.array([[-2.0, -15.0, -20.0]]),
    "patella_axis": np.array([[-15.0, -30.0, 10.0], [20.0, -28.0, 10.0]]),
    "epicondyles": np.array([[40.0, 5.0, 0.0], [-35.0, 5.0, 0.0]]),
    "plateau": np.array([[35.0, 0.0, -15.0], [-33.0, 0.0, -15.0]]),
}
TROCHLEA_MEASURES = {"sulcus_angle", "trochlear_depth", "lateral_trochlear_inclination", "tt_tg"}


@pytest.fixture(scope="module")
def knee():
    image, labels = self_test.knee_case()
    return image, labels, measure(labels, "knee")


@pytest.fixture
def case(knee):
    """The logic's nodes for the shipped knee's true labels (no surfaces: not needed here)."""
    image, labels, _ = knee
    harness = MRMLHarness()
    volume = self_test.add_volume_node(harness.scene, image, "knee")
    result = harness.logic().createOutputNodes(volume, self_test.truth_result(labels, "knee"), surfaces=False)
    return harness, result


def _hand_measurements() -> list[Measurement]:
    """Every knee measure that is a function of its points, on HAND_LANDMARKS, as the pipeline
    gives it (the value of its point function)."""
    out = []
    for d in definitions("knee"):
        function = point_function(d)
        if function is not None:
            points = {name: HAND_LANDMARKS[name].copy() for name in d.needs}
            out.append(Measurement(d, float(function(points)), landmarks=points))
    return out


def _hand_case(harness: MRMLHarness, measurements=None, volume=None):
    root = harness.subjectHierarchy.GetSceneItemID()
    measurements = _hand_measurements() if measurements is None else measurements
    table, nodes, _, links = add_measurement_nodes(harness.scene, measurements, "hand", root, volume)
    return types.SimpleNamespace(
        clinicalTableNode=table, landmarkNodes=nodes, landmarkLinks=links, measurements=measurements
    )


def _table(result) -> list[list[str]]:
    table = result.clinicalTableNode
    return [
        [table.GetCellText(r, c) for c in range(table.GetNumberOfColumns())] for r in range(table.GetNumberOfRows())
    ]


def _cell(result, row: int, column: str) -> str:
    table = result.clinicalTableNode
    return table.GetCellText(row, table.GetColumnIndex(column))


def _row(result, key: str) -> int:
    return next(i for i, m in enumerate(result.measurements) if m.key == key)


def _nodes(result, key: str) -> dict:
    """Landmark name -> Markups node of the measure ``key`` (a node's attributes name the
    measures it serves)."""
    return {
        n.GetAttribute(LANDMARK_ATTRIBUTE): n
        for n in result.landmarkNodes
        if key in n.GetAttribute(MEASURES_ATTRIBUTE).split()
    }


def _lps(node) -> np.ndarray:
    return np.array([node.GetNthControlPointPosition(i) for i in range(node.GetNumberOfControlPoints())]) * RAS


def _set(node, lps_points) -> None:
    for index, point in enumerate(np.atleast_2d(lps_points) * RAS):
        node.SetNthControlPointPosition(index, *map(float, point))


def _lateral(measurement: Measurement) -> np.ndarray:
    """The lateral unit vector of the knee's frame (from the posterior condyles), LPS."""
    medial = measurement.landmarks["posterior_condyles"][0] - measurement.landmarks["posterior_condyles"][1]
    medial[2] = 0.0
    return -medial / np.linalg.norm(medial)


def test_table_says_which_landmarks_move_the_value(knee, case):
    _, result = case
    _, _, expected = knee
    for row, m in enumerate(expected):
        movable = point_function(m.definition) is not None
        assert _cell(result, row, "Landmarks") == (
            (LANDMARKS_MOVABLE if movable else LANDMARKS_DISPLAY) if m.landmarks else ""
        )
        assert _cell(result, row, "Source") == (SOURCE_PIPELINE if m.measurable else "")
    # One node per distinct landmark set, named after its landmark.
    sets = [(n.GetAttribute(LANDMARK_ATTRIBUTE), _lps(n).round(9).tobytes()) for n in result.landmarkNodes]
    assert len(set(sets)) == len(sets)
    shown = {(name, np.asarray(p).round(9).tobytes()) for m in expected for name, p in m.landmarks.items()}
    assert set(sets) == shown


def test_one_markups_node_per_landmark_set_moves_every_measure_that_reads_it():
    """The groove point is one point of one node: moving it rewrites the sulcus angle, the
    trochlear depth, the lateral trochlear inclination and TT-TG, and no other row. A
    display-only set equal to a movable one shares its node, but its row does not follow it; a
    set of the same name elsewhere is its own node."""
    harness = MRMLHarness()
    tubercle = HAND_LANDMARKS["tubercle"]
    area = Measurement(physis.AREA, 321.0, landmarks={"tubercle": tubercle.copy()}, bone="tibia")
    volume = Measurement(physis.VOLUME, 5.0, landmarks={"tubercle": tubercle + 1.0}, bone="femur")
    result = _hand_case(harness, [*_hand_measurements(), area, volume])
    names = sorted(n.GetName() for n in result.landmarkNodes)
    assert names == sorted([*HAND_LANDMARKS, "tubercle (Epiphysis volume (femur))"])
    trochlea = next(n for n in result.landmarkNodes if n.GetName() == "trochlea")
    assert set(trochlea.GetAttribute(MEASURES_ATTRIBUTE).split()) == TROCHLEA_MEASURES
    assert trochlea.IsA("vtkMRMLMarkupsAngleNode")
    assert next(n for n in result.landmarkNodes if n.GetName() == "tubercle").GetAttribute(MEASURES_ATTRIBUTE) == (
        "tt_tg tibia_physeal_area"
    )
    assert len(result.landmarkLinks.observed_nodes) == len(HAND_LANDMARKS)  # the femur's set is display only

    before = _table(result)
    groove = _lps(trochlea)
    moved = groove.copy()
    moved[1] += [1.0, 2.0, 0.0]  # the groove 1 mm medial and 2 mm deeper (posterior)
    _set(trochlea, moved)
    after = _table(result)
    for row, m in enumerate(result.measurements):
        if m.key in TROCHLEA_MEASURES:
            now = remeasure(m, {name: _lps(node) for name, node in _nodes(result, m.key).items()})
            assert now.value != m.value
            assert after[row][1] == str(round(now.value, 3)) and _cell(result, row, "Source") == SOURCE_EDITED
        else:
            assert after[row] == before[row]

    tt_tg_row, area_row = _row(result, "tt_tg"), _row(result, "tibia_physeal_area")
    shared = _nodes(result, "tt_tg")["tubercle"]
    _set(shared, tubercle + 5.0 * _lateral(result.measurements[tt_tg_row]))
    assert after[tt_tg_row] != _table(result)[tt_tg_row]
    assert _table(result)[area_row] == before[area_row]  # display only: the area does not follow

    _set(trochlea, groove)
    _set(shared, tubercle)
    assert _table(result) == before  # the points back where the pipeline put them: "pipeline"


def test_moving_a_tt_tg_point_rewrites_only_its_row_and_undo_restores_it():
    harness = MRMLHarness()
    result = _hand_case(harness)
    row = _row(result, "tt_tg")
    tt_tg = result.measurements[row]
    nodes = _nodes(result, "tt_tg")
    assert set(nodes) == set(tt_tg.landmarks) == {"posterior_condyles", "trochlea", "tubercle"}
    before = _table(result)
    assert float(_cell(result, row, "Value")) == round(tt_tg.value, 3)

    scene = harness.scene
    scene.SetUndoOn()
    for node in nodes.values():
        node.SetUndoEnabled(True)
    scene.SaveStateForUndo()
    tubercle = _lps(nodes["tubercle"])
    _set(nodes["tubercle"], tubercle + 5.0 * _lateral(tt_tg))
    moved = remeasure(tt_tg, {name: _lps(node) for name, node in nodes.items()})
    assert _cell(result, row, "Value") == str(round(moved.value, 3))
    assert abs(moved.value - (tt_tg.value + 5.0)) < 1e-6  # the tubercle 5 mm more lateral: TT-TG + 5
    assert _cell(result, row, "Result") == moved.text and _cell(result, row, "Source") == SOURCE_EDITED
    after = _table(result)
    assert [r for i, r in enumerate(after) if i != row] == [r for i, r in enumerate(before) if i != row]

    scene.Undo()
    np.testing.assert_allclose(_lps(nodes["tubercle"]), tubercle, atol=1e-12)
    assert _table(result) == before  # value, result and source back to the pipeline's


def test_a_hand_computed_tt_tg():
    """Condyles along LPS x (medial = +x), groove at x = 10, tubercle at x = -2: TT-TG = 12 mm
    (tubercle lateral), whatever the heights and depths."""
    result = _hand_case(MRMLHarness())
    nodes = _nodes(result, "tt_tg")
    _set(nodes["posterior_condyles"], [[30.0, 20.0, 0.0], [-10.0, 20.0, 0.0]])
    _set(nodes["trochlea"], [[-5.0, -12.0, 5.0], [10.0, -10.0, 5.0], [25.0, -13.0, 5.0]])
    _set(nodes["tubercle"], [[-2.0, -15.0, -20.0]])
    row = _row(result, "tt_tg")
    assert _cell(result, row, "Value") == "12.0" and _cell(result, row, "Result") == "12.0 mm"


def test_a_degenerate_or_incomplete_markup_says_not_measurable():
    result = _hand_case(MRMLHarness())
    nodes = _nodes(result, "tt_tg")
    row = _row(result, "tt_tg")
    _set(nodes["posterior_condyles"], [[5.0, 5.0, 0.0], [5.0, 5.0, 9.0]])  # a head-foot condylar line
    assert _cell(result, row, "Result") == "not measurable: degenerate geometry (zero-length axis)"
    assert _cell(result, row, "Value") == "" and _cell(result, row, "Source") == SOURCE_EDITED
    nodes["tubercle"].RemoveNthControlPoint(0)
    assert _cell(result, row, "Result") == "not measurable: tubercle needs 1 point(s), has 0"


def test_display_only_markups_do_not_change_their_row():
    """A growth plate's area is not a function of its landmark: its Markups are shown, not linked."""
    harness = MRMLHarness()
    area = Measurement(physis.AREA, 321.0, landmarks={"physis centre": np.array([[1.0, 2.0, 3.0]])}, bone="tibia")
    root = harness.subjectHierarchy.GetSceneItemID()
    table, (node,), _, links = add_measurement_nodes(harness.scene, [area], "case", root)
    assert table.GetCellText(0, table.GetColumnIndex("Landmarks")) == LANDMARKS_DISPLAY
    assert links.observed_nodes == []
    node.SetNthControlPointPosition(0, 10.0, 10.0, 10.0)
    assert float(table.GetCellText(0, table.GetColumnIndex("Value"))) == 321.0
    assert table.GetCellText(0, table.GetColumnIndex("Source")) == SOURCE_PIPELINE


def test_observers_go_with_their_nodes_and_a_scene_clear_raises_nothing(capfd):
    harness = MRMLHarness()
    result = _hand_case(harness)
    table, nodes, links = result.clinicalTableNode, result.landmarkNodes, result.landmarkLinks
    observed = links.observed_nodes
    assert len(observed) == len(nodes)  # every measure here is a function of its points
    assert all(node.HasObserver(node.PointModifiedEvent) for node in observed)
    tubercle = next(node for node in nodes if node.GetName() == "tubercle")
    harness.scene.RemoveNode(tubercle)  # a reader deletes one Markups node
    assert not tubercle.HasObserver(tubercle.PointModifiedEvent)
    row = _row(result, "tt_tg")
    landmarks = [table.GetCellText(r, table.GetColumnIndex("Landmarks")) for r in range(table.GetNumberOfRows())]
    assert landmarks == [LANDMARKS_REMOVED if r == row else LANDMARKS_MOVABLE for r in range(len(landmarks))]
    assert table.GetAttribute(f"{ROW_ATTRIBUTE}{row}") is None  # nor linked again once saved and reloaded
    assert len(links.observed_nodes) == len(observed) - 1
    harness.scene.Clear(0)
    assert links.observed_nodes == []
    assert not any(node.HasObserver(node.PointModifiedEvent) for node in observed)
    alive = weakref.ref(links)
    del links, observed, tubercle, nodes, table, result
    gc.collect()
    assert alive() is None  # no observer left holding the links (and through them the nodes)
    assert "Traceback" not in capfd.readouterr().err


def test_observers_are_removed_when_a_transaction_rolls_back():
    harness = MRMLHarness()
    with pytest.raises(RuntimeError), SceneTransaction(harness.scene):
        result = _hand_case(harness)
        assert len(result.landmarkLinks.observed_nodes) == len(result.landmarkNodes) > 0
        raise RuntimeError("injected")
    assert result.landmarkLinks.observed_nodes == []
    assert not any(node.HasObserver(node.PointModifiedEvent) for node in result.landmarkNodes)


# --- Saved and loaded -----------------------------------------------------------------------


def _markups_storage(scene) -> None:
    """Slicer's Markups module logic registers the Markups JSON storage node in the application's
    scene; a bare slicer-core scene needs it registered to write and read .mrk.json files."""
    scene.RegisterNodeClass(slicer.vtkMRMLMarkupsJsonStorageNode())


def _save_scene(scene, nodes, folder) -> str:
    """Write each storable node with its own storage node and the scene's .mrml file, as Slicer's
    Save dialog does; returns the .mrml path."""
    scene.SetRootDirectory(str(folder))
    for node in nodes:
        node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
        storage.SetFileName(str(folder / f"{node.GetID()}.{storage.GetDefaultWriteFileExtension()}"))
        assert storage.WriteData(node) == 1, node.GetID()
    scene.SetURL(str(folder / "case.mrml"))
    assert scene.Commit() == 1
    return str(folder / "case.mrml")


def test_a_saved_scene_loaded_again_follows_its_markups(knee, tmp_path):
    image, _, _ = knee
    harness = MRMLHarness()
    _markups_storage(harness.scene)
    volume = self_test.add_volume_node(harness.scene, image, "knee")
    result = _hand_case(harness, volume=volume)
    table = _table(result)
    row = _row(result, "tt_tg")
    tt_tg = result.measurements[row]
    mrml = _save_scene(harness.scene, [volume, result.clinicalTableNode, *result.landmarkNodes], tmp_path)
    assert {p.suffix for p in tmp_path.iterdir()} == {".mrml", ".nrrd", ".tsv", ".json"}
    harness.scene.Clear(0)
    del result

    loaded = MRMLHarness()
    _markups_storage(loaded.scene)
    loaded.logic()  # the module's logic restores the links after every scene load
    loaded.scene.SetURL(mrml)
    assert loaded.scene.Connect() == 1
    tables = loaded.scene.GetNodesByClass("vtkMRMLTableNode")
    assert tables.GetNumberOfItems() == 1
    reloaded = types.SimpleNamespace(
        clinicalTableNode=tables.GetItemAsObject(0),
        landmarkNodes=[
            n for n in loaded.scene.GetNodesByClass("vtkMRMLMarkupsNode") if n.GetAttribute(LANDMARK_ATTRIBUTE)
        ],
        measurements=_hand_measurements(),
    )
    assert len(reloaded.landmarkNodes) == len(HAND_LANDMARKS)
    assert _table(reloaded) == table

    nodes = _nodes(reloaded, "tt_tg")
    tubercle = _lps(nodes["tubercle"])
    _set(nodes["tubercle"], tubercle + 5.0 * _lateral(tt_tg))  # followed without any call: the load hook
    assert _cell(reloaded, row, "Value") == str(round(tt_tg.value + 5.0, 3))
    assert _cell(reloaded, row, "Source") == SOURCE_EDITED
    (links,) = restore_landmark_links(loaded.scene)  # again: the same links, not a second set
    assert links.table_node is reloaded.clinicalTableNode
    assert len(links.observed_nodes) == len(HAND_LANDMARKS)
    _set(nodes["tubercle"], tubercle)
    assert _table(reloaded) == table  # back where the pipeline put it: "pipeline" again


def test_the_module_follows_loaded_scenes_from_application_start_without_its_logic(tmp_path):
    """The module (``PediatricBoneSeg.py``, imported with the Qt stand-ins of ``slicer_harness``;
    ``slicer.app`` is one of them) hooks the application's start; once started, a scene loaded
    into the real ``slicer.mrmlScene`` follows its Markups though no logic was ever created."""
    harness = MRMLHarness()
    _markups_storage(harness.scene)
    result = _hand_case(harness)
    row = _row(result, "tt_tg")
    value = _cell(result, row, "Value")
    mrml = _save_scene(harness.scene, [result.clinicalTableNode, *result.landmarkNodes], tmp_path)

    application = MRMLHarness()
    _markups_storage(application.scene)
    with application_standins(application) as module:
        module.PediatricBoneSeg(types.SimpleNamespace())
        (started,) = application.app_slots["startupCompleted()"]
        started()
    application.scene.SetURL(mrml)
    assert application.scene.Connect() == 1
    table = application.scene.GetNodesByClass("vtkMRMLTableNode").GetItemAsObject(0)
    loaded = types.SimpleNamespace(
        clinicalTableNode=table,
        landmarkNodes=[
            n for n in application.scene.GetNodesByClass("vtkMRMLMarkupsNode") if n.GetAttribute(LANDMARK_ATTRIBUTE)
        ],
    )
    tubercle = _nodes(loaded, "tt_tg")["tubercle"]
    _set(tubercle, _lps(tubercle) + 5.0 * _lateral(result.measurements[row]))
    assert _cell(loaded, row, "Value") != value
    assert _cell(loaded, row, "Source") == SOURCE_EDITED


def test_restore_without_the_hook_and_a_row_whose_markups_are_missing(tmp_path):
    harness = MRMLHarness()
    _markups_storage(harness.scene)
    result = _hand_case(harness)
    row = _row(result, "tt_tg")
    assert json.loads(result.clinicalTableNode.GetAttribute(f"{ROW_ATTRIBUTE}{row}"))["key"] == "tt_tg"
    mrml = _save_scene(harness.scene, [result.clinicalTableNode, *result.landmarkNodes], tmp_path)

    scene = MRMLHarness().scene  # no logic: no hook
    _markups_storage(scene)
    scene.SetURL(mrml)
    assert scene.Connect() == 1
    markups = scene.GetNodesByClass("vtkMRMLMarkupsNode")
    scene.RemoveNode(next(n for n in markups if n.GetName() == "tubercle"))  # not in the loaded scene
    (links,) = restore_landmark_links(scene)
    table = links.table_node
    landmarks = [table.GetCellText(r, table.GetColumnIndex("Landmarks")) for r in range(table.GetNumberOfRows())]
    assert landmarks == [LANDMARKS_REMOVED if r == row else LANDMARKS_MOVABLE for r in range(len(landmarks))]
    assert len(links.observed_nodes) == len(HAND_LANDMARKS) - 1
    condyles = next(n for n in links.observed_nodes if n.GetName() == "posterior_condyles")
    width = _row(result, "bicondylar_width")
    before = table.GetCellText(width, table.GetColumnIndex("Value"))
    _set(condyles, _lps(condyles) + np.array([[0.0, 5.0, 0.0], [0.0, 0.0, 0.0]]))  # the condylar line turned
    assert table.GetCellText(width, table.GetColumnIndex("Value")) != before
    assert table.GetCellText(width, table.GetColumnIndex("Source")) == SOURCE_EDITED


# --- Under a transform ----------------------------------------------------------------------


def _rigid(scene, name: str, angle_deg: float, axis, translation):
    """A vtkMRMLLinearTransformNode: a rotation about ``axis`` (Rodrigues) then a translation (RAS)."""
    u = np.asarray(axis, float) / np.linalg.norm(axis)
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    cross = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    rotation = c * np.eye(3) + s * cross + (1.0 - c) * np.outer(u, u)
    matrix = vtkMatrix4x4()
    for i in range(3):
        for j in range(3):
            matrix.SetElement(i, j, rotation[i, j])
        matrix.SetElement(i, 3, float(translation[i]))
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformToParent(matrix)
    return node


def _to_world(node, lps_point) -> list[float]:
    """A point of ``node``'s volume frame (LPS) in world RAS, through ``node``'s transforms."""
    to_world = vtkGeneralTransform()
    node.GetParentTransformNode().GetTransformToWorld(to_world)
    return list(to_world.TransformPoint(*map(float, np.asarray(lps_point) * RAS)))


def test_markups_under_the_volume_transform_are_read_in_the_volume_frame():
    """The volume under a rotation + translation: its Markups sit under the same transform, a
    point moved in world coordinates gives the untransformed case's value, hardening a Markups or
    moving the volume and its Markups under another transform changes nothing, and a transform on
    one Markups alone moves its landmark relative to the image (here back onto the pipeline's)."""
    plain = _hand_case(MRMLHarness())
    harness = MRMLHarness()
    scene = harness.scene
    transform = _rigid(scene, "registration", 35.0, (0.3, -0.5, 0.8), (12.0, -7.0, 25.0))
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "knee")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    result = _hand_case(harness, volume=volume)
    assert all(n.GetTransformNodeID() == transform.GetID() for n in result.landmarkNodes)
    initial = _table(result)
    assert initial == _table(plain)

    row = _row(result, "tt_tg")
    target = HAND_LANDMARKS["tubercle"][0] + 5.0 * _lateral(result.measurements[row])
    tubercle = _nodes(result, "tt_tg")["tubercle"]
    tubercle.SetNthControlPointPositionWorld(0, *_to_world(tubercle, target))
    _set(_nodes(plain, "tt_tg")["tubercle"], target)
    assert _cell(result, row, "Source") == SOURCE_EDITED
    assert _table(result) == _table(plain)  # the same value as without the transform
    edited = _table(result)

    tubercle.HardenTransform()
    condyles = _nodes(result, "tt_tg")["posterior_condyles"]
    condyles.HardenTransform()
    assert tubercle.GetTransformNodeID() is None and condyles.GetTransformNodeID() is None
    assert _table(result) == edited  # world positions kept: values and sources kept

    moved = _rigid(scene, "moved", -20.0, (1.0, 0.2, 0.0), (-30.0, 4.0, 9.0))
    transform.SetAndObserveTransformNodeID(moved.GetID())  # the volume and the Markups under it
    tubercle.SetAndObserveTransformNodeID(moved.GetID())  # the hardened ones re-parented with them
    condyles.SetAndObserveTransformNodeID(moved.GetID())
    assert _table(result) == edited

    offset = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "offset")  # 5 mm medial, volume frame
    matrix = vtkMatrix4x4()
    shift = -5.0 * _lateral(result.measurements[row]) * RAS
    rotation = vtkMatrix4x4()
    transform.GetMatrixTransformToParent(rotation)
    for i in range(3):
        matrix.SetElement(i, 3, float(sum(rotation.GetElement(i, j) * shift[j] for j in range(3))))
    offset.SetMatrixTransformToParent(matrix)
    offset.SetAndObserveTransformNodeID(moved.GetID())
    tubercle.SetAndObserveTransformNodeID(offset.GetID())  # moved back onto the pipeline's tubercle
    assert _table(result) == initial  # every point back where the pipeline put it, in the volume's frame


def test_the_logic_puts_the_markups_under_the_volume_transform(knee):
    image, labels, _ = knee
    values = []
    for transformed in (False, True):
        harness = MRMLHarness()
        volume = self_test.add_volume_node(harness.scene, image, "knee")
        if transformed:
            transform = _rigid(harness.scene, "registration", 35.0, (0.3, -0.5, 0.8), (12.0, -7.0, 25.0))
            volume.SetAndObserveTransformNodeID(transform.GetID())
        logic = harness.logic()
        result = logic.createOutputNodes(volume, self_test.truth_result(labels, "knee"), surfaces=False)
        assert result.landmarkNodes
        assert all(n.GetTransformNodeID() == volume.GetTransformNodeID() for n in result.landmarkNodes)
        condyles = next(n for n in result.landmarkNodes if n.GetName() == "posterior_condyles")
        target = _lps(condyles) + np.array([[4.0, -3.0, 2.0], [0.0, 0.0, 0.0]])
        for index, point in enumerate(target):
            world = _to_world(condyles, point) if transformed else point * RAS
            condyles.SetNthControlPointPositionWorld(index, *map(float, world))
        values.append(_table(result))
    assert values[0] == values[1]  # the transform changes neither the values nor how a move changes them
    assert SOURCE_EDITED in [row[4] for row in values[1]]  # row[4]: the Source column


def test_a_dropped_scene_with_links_is_destroyed_cleanly():
    """A script's own scene dropped with its links: no reference cycle for the garbage collector to
    break half-way (which called into a cleared object and crashed the process)."""
    code = (
        "import gc, sys; sys.path[:0] = ['Testing', 'PediatricBoneSeg']; import slicer\n"
        "from test_slicer_measurements import _hand_measurements\n"
        "from PediatricBoneSegLib.slicer.measurements import add_measurement_nodes\n"
        "def make():\n"
        "    scene = slicer.vtkMRMLScene()\n"
        "    root = scene.GetSubjectHierarchyNode().GetSceneItemID()\n"
        "    add_measurement_nodes(scene, _hand_measurements(), 'case', root)\n"
        "make(); gc.collect(); print('done')\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    errors = "\n".join(line for line in completed.stderr.splitlines() if "WARN|" not in line)
    assert completed.returncode == 0, f"exit {completed.returncode}: {errors[-2000:]}"
    assert completed.stdout.strip() == "done" and "Traceback" not in errors


def test_a_scene_imported_into_a_scene_holding_the_same_case_links_its_own_nodes(tmp_path):
    """Importing a saved case into a scene that holds it already renames the imported node IDs; the
    references follow, so each table follows its own Markups."""
    harness = MRMLHarness()
    _markups_storage(harness.scene)
    harness.logic()  # the load hook
    result = _hand_case(harness)
    mrml = _save_scene(harness.scene, [result.clinicalTableNode, *result.landmarkNodes], tmp_path)
    harness.scene.SetURL(mrml)
    assert harness.scene.Import() == 1
    links = restore_landmark_links(harness.scene)
    assert len(links) == 2 and links[0] is result.landmarkLinks
    imported = links[1]
    assert imported.table_node is not result.clinicalTableNode
    renamed = {n.GetID() for n in imported.observed_nodes}
    assert len(renamed) == len(HAND_LANDMARKS) and not renamed & {n.GetID() for n in result.landmarkNodes}
    original = _table(result)
    copy = types.SimpleNamespace(clinicalTableNode=imported.table_node, measurements=result.measurements)
    row = _row(result, "tt_tg")
    tubercle = next(n for n in imported.observed_nodes if n.GetName() == "tubercle")
    _set(tubercle, _lps(tubercle) + 5.0 * _lateral(result.measurements[row]))
    assert _cell(copy, row, "Source") == SOURCE_EDITED
    assert _table(result) == original
