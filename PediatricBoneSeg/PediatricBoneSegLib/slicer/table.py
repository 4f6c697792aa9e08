"""Morphometry rows -> an MRML table node (one row per bone, one column per measurement).

Text values become string columns, numbers double columns; a sequence value (a bounding-box corner,
principal-axis lengths) is spread over one column per component, ``<name> [i]``. Works on the
scene through its methods (no ``slicer`` import).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkStringArray


def _flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, Sequence) and not isinstance(value, str):
            flat.update({f"{name} [{index}]": item for index, item in enumerate(value)})
        else:
            flat[name] = value
    return flat


def add_table_node(scene: Any, name: str, rows: Sequence[Mapping[str, Any]]) -> Any:
    """Add a vtkMRMLTableNode holding ``rows`` (dicts with the same keys, in column order)."""
    flat_rows = [_flatten(row) for row in rows]
    columns = list(flat_rows[0]) if flat_rows else []
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = table_node.GetTable()
    for column in columns:
        values = [row.get(column) for row in flat_rows]
        if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
            array = vtkDoubleArray()
            for value in values:
                array.InsertNextValue(float(value))
        else:
            array = vtkStringArray()
            for value in values:
                array.InsertNextValue("" if value is None else str(value))
        array.SetName(column)
        table.AddColumn(array)
    table_node.Modified()
    return table_node
