"""Clinical measurements in the scene: a table node (one row per measure: value or "not
measurable" and why, units, where the value comes from, definition, reference) and Markups on the
landmarks the values come from (a point: fiducial, two points: line, three: angle; RAS), so the
reader sees where they were taken and can move a point.

One Markups node per distinct landmark set of the case (same landmark name and same points), named
after the landmark: the knee's trochlea serves the sulcus angle, the trochlear depth, the lateral
trochlear inclination and TT-TG at once. Moving a control point recomputes every measure that is a
function of that node's points (angles, distances, PHHA: ``pipeline.measurements.point_function``)
with the pipeline's own function (``remeasure``), as Slicer's own line and angle measurements follow
their points; their ``Source`` becomes "edited" (back to "pipeline" when the points are back where
the pipeline put them, e.g. after an undo), and no other row changes. Markups of the other measures
(sphere fit, volumes, growth plates) are for display only, as the ``Landmarks`` column says.

The Markups sit under the input volume's parent transform, so they overlay the image; their points
are read in world coordinates and mapped back into the volume's own frame (where the pipeline
measured), so a transform, hardening it or moving a point in any view gives the value in the
image's frame. What a link needs is kept in node attributes and references (saved with the scene):
``restore_landmark_links`` rebuilds the links of a loaded scene and ``follow_scene_loads`` does it
after every scene load. Works on the scene through its methods (no ``slicer`` import).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from vtkmodules.util.misc import calldata_type
from vtkmodules.util.vtkConstants import VTK_OBJECT
from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

from ..pipeline.measurements import Measurement, definitions, point_function, remeasure
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
# (which removes and re-adds the points), a point added or deleted; and its parent transform
# changed, modified or hardened (the points move in the world, maybe not relative to the image).
_POINT_EVENTS = (
    "PointModifiedEvent",
    "PointEndInteractionEvent",
    "PointAddedEvent",
    "PointRemovedEvent",
    "TransformModifiedEvent",
)
# What a link needs, in the scene (node attributes and references are written to the .mrml file;
# references follow the node IDs renamed by a scene import).
JOINT_ATTRIBUTE = "PediatricBoneSeg.clinicalJoint"  # table: marks a clinical table; the case's joint
ROW_ATTRIBUTE = "PediatricBoneSeg.linkedRow."  # table, + row: {"key", "value", "landmarks"} (JSON)
ROW_LANDMARKS_ROLE = "PediatricBoneSeg.rowLandmarks."  # table reference, + row: its Markups in "landmarks" order
VOLUME_ROLE = "PediatricBoneSeg.volume"  # table reference: the volume whose frame the points are in
LANDMARK_ATTRIBUTE = "PediatricBoneSeg.landmark"  # Markups: the landmark's name
POINTS_ATTRIBUTE = "PediatricBoneSeg.pipelinePoints"  # Markups: where the pipeline put them (LPS mm, JSON)
MEASURES_ATTRIBUTE = "PediatricBoneSeg.measures"  # Markups: keys of the measures it shows, space-separated
_LIVE: weakref.WeakSet[LandmarkLinks] = weakref.WeakSet()  # links alive (their observers keep them)
_FOLLOWED: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # scene -> its observer tag


def add_measurement_nodes(
    scene: Any, measurements: Sequence[Any], name: str, parent_item: int, volume_node: Any = None
) -> tuple[Any, list[Any], int, LandmarkLinks]:
    """The table node, the distinct landmark Markups nodes, their folder item (0 when nothing is
    measurable) and the links that keep the table in step with the movable Markups (observers
    removed with the nodes). ``volume_node``: the image measured; the Markups go under its parent
    transform and its frame is the one the points are read in (None: the world's)."""
    rows = []
    for m in measurements:
        entry = m.to_json()
        movable = point_function(m.definition) is not None
        rows.append(
            {
                "Measure": entry["name"],
                "Value": _value_text(entry),
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
    table.SetAttribute(JOINT_ATTRIBUTE, next((m.definition.joint for m in measurements if m.definition.joint), ""))
    transform_id = None
    if volume_node is not None:
        table.SetNodeReferenceID(VOLUME_ROLE, volume_node.GetID())
        transform_id = volume_node.GetTransformNodeID()
    links = LandmarkLinks(scene, table)
    landmark_sets: list[_LandmarkSet] = []
    folder = 0
    for row, m in enumerate(measurements):
        nodes = {}
        for landmark, points in m.landmarks.items():
            points = np.atleast_2d(np.asarray(points, float))
            shared = next((s for s in landmark_sets if s.name == landmark and np.array_equal(s.points, points)), None)
            if shared is None:
                if folder == 0:
                    folder = create_folder(scene, f"{name} measurement landmarks", parent_item)
                # A second set of the same name (another bone's growth plate) says whose it is.
                taken = any(s.name == landmark for s in landmark_sets)
                title = f"{landmark} ({m.to_json()['name']})" if taken else landmark
                shared = _LandmarkSet(
                    landmark, points, _add_landmark_node(scene, title, landmark, points, transform_id)
                )
                place_node(scene, shared.node, folder)
                landmark_sets.append(shared)
            shared.measures.append(m.key)
            nodes[landmark] = shared.node
        if nodes and m.measurable and point_function(m.definition) is not None:
            links.link(row, m, nodes)
    for landmark_set in landmark_sets:
        landmark_set.node.SetAttribute(MEASURES_ATTRIBUTE, " ".join(landmark_set.measures))
    return table, [s.node for s in landmark_sets], folder, links


@dataclass(eq=False)
class _LandmarkSet:
    """One distinct landmark set of a case: its Markups node and the measures it serves."""

    name: str
    points: np.ndarray  # (N, 3) LPS mm, as the pipeline placed them
    node: Any
    measures: list[str] = field(default_factory=list)


def _value_text(entry: dict) -> str:
    """A measurement's Value cell: always text ("" when not measurable), so the column stays text."""
    return "" if entry["value"] is None else str(entry["value"])


def _add_landmark_node(scene: Any, title: str, landmark: str, points: np.ndarray, transform_id: str | None) -> Any:
    node = scene.AddNewNodeByClass(_MARKUP_CLASSES.get(len(points), "vtkMRMLMarkupsFiducialNode"), title)
    node.CreateDefaultDisplayNodes()
    for point in points * _LPS_RAS:
        node.AddControlPoint(float(point[0]), float(point[1]), float(point[2]))  # local: the volume's frame
    node.SetAttribute(LANDMARK_ATTRIBUTE, landmark)
    node.SetAttribute(POINTS_ATTRIBUTE, json.dumps(points.tolist()))  # repr floats: exact
    if transform_id:
        node.SetAndObserveTransformNodeID(transform_id)
    return node


def restore_landmark_links(scene: Any) -> list[LandmarkLinks]:
    """The links of every clinical table of ``scene`` (one ``LandmarkLinks`` per table), rebuilt
    from what ``add_measurement_nodes`` recorded in the nodes, e.g. after the scene was saved and
    loaded; a table already linked keeps its links. Each restored row is rewritten from its points
    as they are now; a row whose Markups are gone says so in its ``Landmarks`` cell."""
    restored = []
    tables = scene.GetNodesByClass("vtkMRMLTableNode")
    for index in range(tables.GetNumberOfItems()):
        table = tables.GetItemAsObject(index)
        joint = table.GetAttribute(JOINT_ATTRIBUTE)
        if joint is None:
            continue
        existing = next((links for links in _LIVE if links.table_node is table and links.observed_nodes), None)
        if existing is not None:
            restored.append(existing)
            continue
        links = LandmarkLinks(scene, table)
        known = {d.key: d for d in definitions(joint)} if joint else {}
        for attribute in table.GetAttributeNames() or ():
            if not attribute.startswith(ROW_ATTRIBUTE):
                continue
            row = int(attribute[len(ROW_ATTRIBUTE) :])
            saved = json.loads(table.GetAttribute(attribute))
            role = f"{ROW_LANDMARKS_ROLE}{row}"
            nodes = [table.GetNthNodeReference(role, i) for i in range(len(saved["landmarks"]))]
            if saved["key"] not in known or any(node is None for node in nodes):
                links.forget(row)
                continue
            measurement = Measurement(
                known[saved["key"]],
                saved["value"],
                landmarks={
                    name: np.array(json.loads(node.GetAttribute(POINTS_ATTRIBUTE)), float).reshape(-1, 3)
                    for name, node in zip(saved["landmarks"], nodes)
                },
            )
            links.update(links.link(row, measurement, dict(zip(saved["landmarks"], nodes))))
        restored.append(links)
    return restored


def follow_scene_loads(scene: Any) -> list[LandmarkLinks]:
    """Restore the links of ``scene``'s clinical tables now and after every scene load or import
    into it (its EndImportEvent), observing each scene once; returns the links restored now."""
    if scene not in _FOLLOWED:
        _FOLLOWED[scene] = scene.AddObserver(scene.EndImportEvent, _on_scene_imported)
    return restore_landmark_links(scene)


def _on_scene_imported(scene: Any, event: str) -> None:
    restore_landmark_links(scene)


@dataclass(eq=False)
class _Link:
    row: int  # of the table
    measurement: Any  # pipeline.measurements.Measurement, as the pipeline gave it
    nodes: dict[str, Any]  # landmark name -> its Markups node


class LandmarkLinks:
    """Observes the movable Markups of one clinical table: a point event on a Markups node
    rewrites the rows of the measures it serves (Value, Result, Source). Observes the scene too,
    so that a removed Markups node (or the table, or a scene close) takes its observers with it:
    nothing keeps a removed node or this object alive."""

    def __init__(self, scene: Any, table_node: Any) -> None:
        # The scene weakly: its observer holds this object, and a strong reference back makes a
        # cycle that Python's garbage collector may clear while the dropped scene is being
        # destroyed, calling into a half-cleared object (a crash). The observer is handed the scene.
        self._scene = weakref.ref(scene)
        self.table_node = table_node
        self._links: list[_Link] = []
        self._observers: dict[str, tuple[Any, list[int]]] = {}  # node ID -> (node, observer tags)
        self._scene_tag: int | None = None
        _LIVE.add(self)

    @property
    def observed_nodes(self) -> list[Any]:
        """The Markups nodes observed now (empty once they or the table are gone)."""
        return [node for node, _ in self._observers.values()]

    def link(self, row: int, measurement: Any, nodes: dict[str, Any]) -> _Link:
        """Make ``row`` follow ``nodes`` (landmark name -> Markups) and record it in the table."""
        link = _Link(row, measurement, nodes)
        self._links.append(link)
        table = self.table_node
        saved = {"key": measurement.key, "value": measurement.value, "landmarks": list(nodes)}
        table.SetAttribute(f"{ROW_ATTRIBUTE}{row}", json.dumps(saved))
        for index, node in enumerate(nodes.values()):
            table.SetNthNodeReferenceID(f"{ROW_LANDMARKS_ROLE}{row}", index, node.GetID())
        for node in nodes.values():
            if node.GetID() not in self._observers:
                tags = [node.AddObserver(getattr(node, event), self._on_point_event) for event in _POINT_EVENTS]
                self._observers[node.GetID()] = (node, tags)
        if self._scene_tag is None:
            scene = self._current_scene()
            self._scene_tag = scene.AddObserver(scene.NodeAboutToBeRemovedEvent, self._on_node_removed)
        return link

    def forget(self, row: int) -> None:
        """``row`` no longer follows landmarks (one of its Markups is gone): say so, and drop its
        record so that a saved and reloaded scene does not link it again."""
        table = self.table_node
        table.SetCellText(row, table.GetColumnIndex("Landmarks"), LANDMARKS_REMOVED)
        table.RemoveAttribute(f"{ROW_ATTRIBUTE}{row}")
        table.RemoveNodeReferenceIDs(f"{ROW_LANDMARKS_ROLE}{row}")

    def points(self, link: _Link) -> dict[str, np.ndarray]:
        """The link's control points now, LPS mm in the volume's frame (that of the pipeline's
        points): world positions mapped back through the volume's parent transform, so the
        transform a Markups node sits under, or its hardening, does not change them."""
        volume = self.table_node.GetNodeReference(VOLUME_ROLE)
        parent = volume.GetParentTransformNode() if volume is not None else None
        from_world = None
        if parent is not None:
            from_world = vtkGeneralTransform()
            parent.GetTransformFromWorld(from_world)
        points = {}
        for name, node in link.nodes.items():
            world = [node.GetNthControlPointPositionWorld(i) for i in range(node.GetNumberOfControlPoints())]
            if from_world is not None:
                world = [from_world.TransformPoint(point) for point in world]
            points[name] = np.array(world, float).reshape(-1, 3) * _LPS_RAS
        return points

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
            ("Value", _value_text(entry)),
            ("Result", entry["text"]),
            ("Source", SOURCE_PIPELINE if unmoved else SOURCE_EDITED),
        ):
            table.SetCellText(link.row, table.GetColumnIndex(column), text)

    def detach(self) -> None:
        """Remove every observer this object installed."""
        self._detach(self._current_scene())

    def _current_scene(self) -> Any:
        scene = self._scene()  # None once its Python wrapper is gone; the table still knows it
        return scene if scene is not None else self.table_node.GetScene()

    def _detach(self, scene: Any) -> None:
        for node, tags in self._observers.values():
            for tag in tags:
                node.RemoveObserver(tag)
        self._observers.clear()
        self._links.clear()
        if self._scene_tag is not None and scene is not None:
            scene.RemoveObserver(self._scene_tag)
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
            self._detach(scene)
            return
        observed = self._observers.pop(node.GetID(), None)
        if observed is None:
            return
        for tag in observed[1]:
            node.RemoveObserver(tag)
        broken = [link for link in self._links if any(linked is node for linked in link.nodes.values())]
        self._links = [link for link in self._links if all(link is not gone for gone in broken)]
        for link in broken:
            self.forget(link.row)
        if not self._observers:
            self._detach(scene)
