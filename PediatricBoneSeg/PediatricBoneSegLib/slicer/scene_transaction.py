"""All-or-nothing changes to an MRML scene.

``with SceneTransaction(scene):`` records the scene's nodes and subject-hierarchy items; if the
block raises (an error or a cancel), everything added inside it is removed again — nodes, their
display and storage nodes, and subject-hierarchy folders — so the scene is exactly as before.
Removing a displayable node does not remove its display nodes, hence the node-level bookkeeping.

Works on the scene object through its methods only (no ``slicer`` import).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any


def node_ids(scene: Any) -> list[str]:
    """IDs of every node of the scene, in scene order."""
    return [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]


def _subject_hierarchy_items(scene: Any) -> set[int]:
    sh_node = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    if sh_node is None:
        return set()
    from vtkmodules.vtkCommonCore import vtkIdList

    children = vtkIdList()
    sh_node.GetItemChildren(sh_node.GetSceneItemID(), children, True)
    return {children.GetId(index) for index in range(children.GetNumberOfIds())}


class SceneTransaction:
    """Context manager: on an exception, remove what the block added to ``scene``; re-raise."""

    def __init__(self, scene: Any) -> None:
        self.scene = scene
        self._nodes: set[str] = set()
        self._items: set[int] = set()

    def __enter__(self) -> SceneTransaction:
        self._nodes = set(node_ids(self.scene))
        self._items = _subject_hierarchy_items(self.scene)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.rollback()

    def rollback(self) -> None:
        """Remove every item and node added since ``__enter__``."""
        sh_node = self.scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
        if sh_node is not None and sh_node.GetID() in self._nodes:
            for item in sorted(_subject_hierarchy_items(self.scene) - self._items, reverse=True):
                sh_node.RemoveItem(item, False, False)  # children first (higher IDs); nodes below
        for node_id in reversed(node_ids(self.scene)):
            if node_id not in self._nodes:
                node = self.scene.GetNodeByID(node_id)
                if node is not None:
                    self.scene.RemoveNode(node)
