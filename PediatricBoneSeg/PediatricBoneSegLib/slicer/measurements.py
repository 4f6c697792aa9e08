"""Clinical measurements in the scene: a table node (one row per measure: value or "not
measurable" and why, units, definition, reference) and Markups on the landmarks each value comes
from (a point: fiducial, two points: line, three: angle; RAS), so the reader sees where it was
taken and can move a point. Works on the scene through its methods (no ``slicer`` import)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .hierarchy import create_folder, place_node
from .table import add_table_node

_MARKUP_CLASSES = {1: "vtkMRMLMarkupsFiducialNode", 2: "vtkMRMLMarkupsLineNode", 3: "vtkMRMLMarkupsAngleNode"}


def add_measurement_nodes(
    scene: Any, measurements: Sequence[Any], name: str, parent_item: int
) -> tuple[Any, list[Any], int]:
    """The table node, the markups nodes and their folder item (0 when nothing is measurable)."""
    rows = [
        {
            "Measure": entry["name"],
            "Value": "" if entry["value"] is None else entry["value"],
            "Unit": entry["unit"],
            "Result": entry["text"],
            "Definition": entry["definition"],
            "Reference": entry["reference"],
        }
        for entry in (m.to_json() for m in measurements)
    ]
    table = add_table_node(scene, f"{name} clinical measurements", rows)
    place_node(scene, table, parent_item)
    markups: list[Any] = []
    folder = 0
    for m in measurements:
        for landmark, points in m.landmarks.items():
            points = np.atleast_2d(np.asarray(points, float))
            if folder == 0:
                folder = create_folder(scene, f"{name} measurement landmarks", parent_item)
            node = scene.AddNewNodeByClass(
                _MARKUP_CLASSES.get(len(points), "vtkMRMLMarkupsFiducialNode"),
                f"{m.to_json()['name']}: {landmark}",
            )
            node.CreateDefaultDisplayNodes()
            for point in points:
                node.AddControlPoint(float(-point[0]), float(-point[1]), float(point[2]))  # LPS -> RAS
            place_node(scene, node, folder)
            markups.append(node)
    return table, markups, folder
