"""Clinical measurements in the scene: a table node (one row per measure: value or "not
measurable" and why, units, where the value comes from, definition, reference) and Markups on the
landmarks each value comes from (a point: fiducial, two points: line, three: angle; RAS), so the
reader sees where it was taken and can move a point.

Moving a control point of a measure that is a function of its landmark points (angles, distances,
PHHA: ``pipeline.measurements.point_function``) recomputes that measure's row with the pipeline's
own function (``remeasure``), as Slicer's own line and angle measurements follow their points; its
``Source`` becomes "edited" (back to "pipeline" when the points are back where the pipeline put
them, e.g. after an undo), and no other row changes. The Markups of the other measures (sphere fit,
volumes, growth plates) are for display only, as the ``Landmarks`` column says. Works on the scene
through its methods (no ``slicer`` import).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from vtkmodules.util.misc import calldata_type
from vtkmodules.util.vtkConstants import VTK_OBJECT

from ..pipeline.measurements import point_function, remeasure
from .hierarchy import create_folder, place_node
from .table import add_table_node

_MARKUP_CLASSES = {1: "vtkMRMLMarkupsFiducialNode", 2: "vtkMRMLMarkupsLineNode", 3: "vtkMRMLMarkupsAngleNode"}
_LPS_RAS = np.array([-1.0, -1.0, 1.0])  # either way: LPS <-> RAS flips the first two axes
SOURCE_PIPELINE = "pipeline"  # the value the segmentation's landmarks give
SOURCE_EDITED = "edited"  # recomputed from control points moved by hand
LANDMARKS_MOVABLE = "movable: moving a point recomputes the value"
LANDMARKS_DISPLAY = "display only"
LANDMARKS_REMOVED = "removed: the value no longer follows its landmarks"
# Point events of vtkMRMLMarkupsNode: a drag (during and at its end), a scripted move, an undo
# (which removes and re-adds the points), a point added or deleted.
_POINT_EVENTS = ("PointModifiedEvent", "PointEndInteractionEvent", "PointAddedEvent", "PointRemovedEvent")


def add_measurement_nodes(
    scene: Any, measurements: Sequence[Any], name: str, parent_item: int
) -> tuple[Any, list[Any], int, LandmarkLinks]:
    """The table node, the markups nodes, their folder item (0 when nothing is measurable) and the
    links that keep the table in step with the movable Markups (observers removed with the nodes)."""
    rows = []
    for m in measurements:
        entry = m.to_json()
        movable = point_function(m.definition) is not None
        rows.append(
            {
                "Measure": entry["name"],
                "Value": "" if entry["value"] is None else entry["value"],
                "Unit": entry["unit"],
                "Result": entry["text"],
                "Source": SOURCE_PIPELINE if m.measurable else "",
                "Landmarks": (LANDMARKS_MOVABLE if movable else LANDMARKS_DISPLAY) if m.landmarks else "",
                "Definition": entry["definition"],
                "Reference": entry["reference"],
            }
        )
    table = add_table_node(scene, f"{name} clinical measurements", rows)
    place_node(scene, table, parent_item)
    links = LandmarkLinks(scene, table)
    markups: list[Any] = []
    folder = 0
    for row, m in enumerate(measurements):
        nodes = {}
        for landmark, points in m.landmarks.items():
            points = np.atleast_2d(np.asarray(points, float))
            if folder == 0:
                folder = create_folder(scene, f"{name} measurement landmarks", parent_item)
            node = scene.AddNewNodeByClass(
                _MARKUP_CLASSES.get(len(points), "vtkMRMLMarkupsFiducialNode"),
                f"{m.to_json()['name']}: {landmark}",
            )
            node.CreateDefaultDisplayNodes()
            for point in points * _LPS_RAS:
                node.AddControlPoint(float(point[0]), float(point[1]), float(point[2]))
            place_node(scene, node, folder)
            markups.append(node)
            nodes[landmark] = node
        if nodes and m.measurable and point_function(m.definition) is not None:
            links.link(row, m, nodes)
    return table, markups, folder, links


@dataclass(eq=False)
class _Link:
    row: int  # of the table
    measurement: Any  # pipeline.measurements.Measurement, as the pipeline gave it
    nodes: dict[str, Any]  # landmark name -> its Markups node


class LandmarkLinks:
    """Observes the movable Markups of one clinical table: a point event on a measure's node
    rewrites that measure's row (Value, Result, Source). Observes the scene too, so that a removed
    Markups node (or the table, or a scene close) takes its observers with it: nothing keeps a
    removed node or this object alive."""

    def __init__(self, scene: Any, table_node: Any) -> None:
        self.scene = scene
        self.table_node = table_node
        self._links: list[_Link] = []
        self._observers: dict[str, tuple[Any, list[int]]] = {}  # node ID -> (node, observer tags)
        self._scene_tag: int | None = None

    @property
    def observed_nodes(self) -> list[Any]:
        """The Markups nodes observed now (empty once they or the table are gone)."""
        return [node for node, _ in self._observers.values()]

    def link(self, row: int, measurement: Any, nodes: dict[str, Any]) -> None:
        self._links.append(_Link(row, measurement, nodes))
        for node in nodes.values():
            if node.GetID() not in self._observers:
                tags = [node.AddObserver(getattr(node, event), self._on_point_event) for event in _POINT_EVENTS]
                self._observers[node.GetID()] = (node, tags)
        if self._scene_tag is None:
            self._scene_tag = self.scene.AddObserver(self.scene.NodeAboutToBeRemovedEvent, self._on_node_removed)

    def points(self, link: _Link) -> dict[str, np.ndarray]:
        """The link's control points now, LPS mm (node coordinates, as they were placed)."""
        return {
            name: np.array(
                [node.GetNthControlPointPosition(i) for i in range(node.GetNumberOfControlPoints())], float
            ).reshape(-1, 3)
            * _LPS_RAS
            for name, node in link.nodes.items()
        }

    def update(self, link: _Link) -> None:
        """Rewrite the link's row from its control points."""
        original = link.measurement
        points = self.points(link)
        unmoved = all(
            points[name].shape == np.shape(where) and np.allclose(points[name], where, rtol=0.0, atol=1e-9)
            for name, where in original.landmarks.items()
        )
        current = original if unmoved else remeasure(original, points)
        entry = current.to_json()
        table = self.table_node
        for column, text in (
            ("Value", "" if entry["value"] is None else str(entry["value"])),
            ("Result", entry["text"]),
            ("Source", SOURCE_PIPELINE if unmoved else SOURCE_EDITED),
        ):
            table.SetCellText(link.row, table.GetColumnIndex(column), text)

    def detach(self) -> None:
        """Remove every observer this object installed."""
        for node, tags in self._observers.values():
            for tag in tags:
                node.RemoveObserver(tag)
        self._observers.clear()
        self._links.clear()
        if self._scene_tag is not None:
            self.scene.RemoveObserver(self._scene_tag)
            self._scene_tag = None

    def _on_point_event(self, node: Any, event: str) -> None:
        for link in self._links:
            if any(linked is node for linked in link.nodes.values()):
                self.update(link)

    @calldata_type(VTK_OBJECT)
    def _on_node_removed(self, scene: Any, event: str, node: Any) -> None:
        if node is None:
            return
        if node.GetID() == self.table_node.GetID():
            self.detach()
            return
        observed = self._observers.pop(node.GetID(), None)
        if observed is None:
            return
        for tag in observed[1]:
            node.RemoveObserver(tag)
        broken = [link for link in self._links if any(linked is node for linked in link.nodes.values())]
        self._links = [link for link in self._links if all(link is not gone for gone in broken)]
        for link in broken:
            self.table_node.SetCellText(link.row, self.table_node.GetColumnIndex("Landmarks"), LANDMARKS_REMOVED)
        if not self._observers:
            self.detach()
