"""Subject-hierarchy placement of the nodes the module creates.

Inside Slicer the application's plugins give every new data node a subject-hierarchy item; outside
it (slicer-core, tests) nobody does. Both cases are handled: an existing item is re-parented, a
missing one is created explicitly. Works on the scene through its methods (no ``slicer`` import).
"""

from __future__ import annotations

from typing import Any


def subject_hierarchy(scene: Any) -> Any:
    """The scene's subject-hierarchy node (created by the scene on first request)."""
    return scene.GetSubjectHierarchyNode()


def parent_item_of(scene: Any, node: Any) -> int:
    """The item under which ``node`` sits (its study, patient or folder), or the scene item."""
    sh_node = subject_hierarchy(scene)
    item = sh_node.GetItemByDataNode(node)
    parent = sh_node.GetItemParent(item) if item else 0
    return parent or sh_node.GetSceneItemID()


def place_node(scene: Any, node: Any, parent_item: int) -> int:
    """Put ``node`` under ``parent_item``; returns the node's item ID."""
    sh_node = subject_hierarchy(scene)
    item = sh_node.GetItemByDataNode(node)
    if item:
        sh_node.SetItemParent(item, parent_item)
        return item
    return sh_node.CreateItem(parent_item, node)


def create_folder(scene: Any, name: str, parent_item: int) -> int:
    return subject_hierarchy(scene).CreateFolderItem(parent_item, name)
