"""Clinical-measurement Markups a reader can move, on a real vtkMRMLScene (slicer-core): moving a
control point of a measure that is a function of its points rewrites that measure's table row with
the pipeline's own point function (``pipeline.measurements.remeasure``), an undo restores it, the
other rows and the display-only Markups stay as they are, and the observers go with the nodes."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from slicer_harness import MRMLHarness

from PediatricBoneSegLib.pipeline.measurements import Measurement, measure, physis, point_function, remeasure
from PediatricBoneSegLib.slicer import self_test
from PediatricBoneSegLib.slicer.measurements import (
    LANDMARKS_DISPLAY,
    LANDMARKS_MOVABLE,
    LANDMARKS_REMOVED,
    SOURCE_EDITED,
    SOURCE_PIPELINE,
    add_measurement_nodes,
)
from PediatricBoneSegLib.slicer.scene_transaction import SceneTransaction

RAS = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS


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


def _table(result) -> list[list[str]]:
    table = result.clinicalTableNode
    return [
        [table.GetCellText(r, c) for c in range(table.GetNumberOfColumns())] for r in range(table.GetNumberOfRows())
    ]


def _cell(result, row: int, column: str) -> str:
    table = result.clinicalTableNode
    return table.GetCellText(row, table.GetColumnIndex(column))


def _nodes(result, measure_name: str) -> dict:
    """Landmark name -> Markups node of one measure (node names are "<measure>: <landmark>")."""
    prefix = f"{measure_name}: "
    return {n.GetName()[len(prefix) :]: n for n in result.landmarkNodes if n.GetName().startswith(prefix)}


def _lps(node) -> np.ndarray:
    return np.array([node.GetNthControlPointPosition(i) for i in range(node.GetNumberOfControlPoints())]) * RAS


def _set(node, lps_points) -> None:
    for index, point in enumerate(np.atleast_2d(lps_points) * RAS):
        node.SetNthControlPointPosition(index, *map(float, point))


def test_table_says_which_landmarks_move_the_value(knee, case):
    _, result = case
    _, _, expected = knee
    for row, m in enumerate(expected):
        movable = point_function(m.definition) is not None
        assert _cell(result, row, "Landmarks") == (
            (LANDMARKS_MOVABLE if movable else LANDMARKS_DISPLAY) if m.landmarks else ""
        )
        assert _cell(result, row, "Source") == (SOURCE_PIPELINE if m.measurable else "")


def test_moving_a_tt_tg_point_rewrites_only_its_row_and_undo_restores_it(knee, case):
    harness, result = case
    _, _, expected = knee
    row = next(i for i, m in enumerate(expected) if m.key == "tt_tg")
    tt_tg = expected[row]
    nodes = _nodes(result, "TT-TG distance")
    assert set(nodes) == set(tt_tg.landmarks) == {"posterior_condyles", "trochlea", "tubercle"}
    before = _table(result)
    original = _cell(result, row, "Value")
    assert float(original) == round(tt_tg.value, 3)

    scene = harness.scene
    scene.SetUndoOn()
    for node in nodes.values():
        node.SetUndoEnabled(True)
    scene.SaveStateForUndo()
    tubercle = _lps(nodes["tubercle"])
    medial = tt_tg.landmarks["posterior_condyles"][0] - tt_tg.landmarks["posterior_condyles"][1]
    medial[2] = 0.0
    _set(nodes["tubercle"], tubercle - 5.0 * medial / np.linalg.norm(medial))  # 5 mm lateral
    moved = remeasure(tt_tg, {name: _lps(node) for name, node in nodes.items()})
    assert _cell(result, row, "Value") == str(round(moved.value, 3))
    assert abs(moved.value - (tt_tg.value + 5.0)) < 1e-6  # the tubercle 5 mm more lateral: TT-TG + 5
    assert _cell(result, row, "Result") == moved.text and _cell(result, row, "Source") == SOURCE_EDITED
    after = _table(result)
    assert [r for i, r in enumerate(after) if i != row] == [r for i, r in enumerate(before) if i != row]

    scene.Undo()
    np.testing.assert_allclose(_lps(nodes["tubercle"]), tubercle, atol=1e-12)
    assert _table(result) == before  # value, result and source back to the pipeline's


def test_a_hand_computed_tt_tg(case):
    """Condyles along LPS x (medial = +x), groove at x = 10, tubercle at x = -2: TT-TG = 12 mm
    (tubercle lateral), whatever the heights and depths."""
    _, result = case
    nodes = _nodes(result, "TT-TG distance")
    _set(nodes["posterior_condyles"], [[30.0, 20.0, 0.0], [-10.0, 20.0, 0.0]])
    _set(nodes["trochlea"], [[-5.0, -12.0, 5.0], [10.0, -10.0, 5.0], [25.0, -13.0, 5.0]])
    _set(nodes["tubercle"], [[-2.0, -15.0, -20.0]])
    row = [r[0] for r in _table(result)].index("TT-TG distance")
    assert _cell(result, row, "Value") == "12.0" and _cell(result, row, "Result") == "12.0 mm"


def test_a_degenerate_or_incomplete_markup_says_not_measurable(case):
    _, result = case
    nodes = _nodes(result, "TT-TG distance")
    row = [r[0] for r in _table(result)].index("TT-TG distance")
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


def test_observers_go_with_their_nodes_and_a_scene_clear_raises_nothing(knee, capfd):
    harness = MRMLHarness()
    _, _, measured = knee
    root = harness.subjectHierarchy.GetSceneItemID()
    table, nodes, _, links = add_measurement_nodes(harness.scene, measured, "case", root)
    observed = links.observed_nodes
    assert len(observed) == len(nodes)  # every knee measure is a function of its points
    assert all(node.HasObserver(node.PointModifiedEvent) for node in observed)
    tubercle = next(node for node in nodes if node.GetName() == "TT-TG distance: tubercle")
    harness.scene.RemoveNode(tubercle)  # a reader deletes one Markups node
    assert not tubercle.HasObserver(tubercle.PointModifiedEvent)
    row = next(i for i, m in enumerate(measured) if m.key == "tt_tg")
    assert table.GetCellText(row, table.GetColumnIndex("Landmarks")) == LANDMARKS_REMOVED
    assert len(links.observed_nodes) == len(observed) - 1
    harness.scene.Clear(0)
    assert links.observed_nodes == []
    assert not any(node.HasObserver(node.PointModifiedEvent) for node in observed)
    alive = weakref.ref(links)
    del links, observed, tubercle, nodes, table
    gc.collect()
    assert alive() is None  # no observer left holding the links (and through them the nodes)
    assert "Traceback" not in capfd.readouterr().err


def test_observers_are_removed_when_a_transaction_rolls_back(knee):
    harness = MRMLHarness()
    _, _, measured = knee
    with pytest.raises(RuntimeError), SceneTransaction(harness.scene):
        root = harness.subjectHierarchy.GetSceneItemID()
        _, nodes, _, links = add_measurement_nodes(harness.scene, measured, "case", root)
        assert len(links.observed_nodes) == len(nodes) > 0
        raise RuntimeError("injected")
    assert links.observed_nodes == []
    assert not any(node.HasObserver(node.PointModifiedEvent) for node in nodes)
