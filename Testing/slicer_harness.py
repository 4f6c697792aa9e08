"""Running the Slicer module's code without the Slicer application.

Real parts (slicer-core, Kitware's PyPI build of Slicer's MRML and module logics):
``MRMLHarness`` makes a real vtkMRMLScene with its subject-hierarchy node and a real
vtkSlicerSegmentationsModuleLogic whose scene is set BEFORE any segmentation node exists (otherwise
the closed-surface conversion silently produces nothing). Application and module logics hold raw
pointers to each other, so every one created here is kept alive until the process ends.

Stand-ins (the project's own, tiny, ONLY for the Qt application layer that slicer-core lacks):
``application_standins`` makes ``import qt``, ``import ctk``, ``slicer.ScriptedLoadableModule``,
``slicer.parameterNodeWrapper``, ``slicer.mrmlScene``, ``slicer.modules.segmentations.logic()`` and
``slicer.app.connect`` (which records the application signals' slots in ``harness.app_slots``)
resolve while ``PediatricBoneSeg.py`` is imported and its Test class runs. They implement just what
that file touches at import time and in its Test class (class bases, decorators, ``delayDisplay``,
the start-up hook); the Widget, which needs real Qt, is never instantiated here.
"""

from __future__ import annotations

import importlib
import sys
import types
import unittest
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import slicer

MODULE_DIR = Path(__file__).resolve().parent.parent / "PediatricBoneSeg"
_KEEP_ALIVE: list[Any] = []  # module logics and scenes must outlive every node that refers to them


class MRMLHarness:
    """A real MRML scene with the module logics PediatricBoneSegLogic needs."""

    def __init__(self) -> None:
        self.scene = slicer.vtkMRMLScene()
        self.segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
        self.segmentationsLogic.SetMRMLScene(self.scene)
        self.scene.GetSubjectHierarchyNode()  # the application's scene always has one
        self.app_slots: dict[str, list[Any]] = {}  # Qt signal of slicer.app -> slots connected to it
        _KEEP_ALIVE.extend([self.scene, self.segmentationsLogic])

    @property
    def subjectHierarchy(self) -> Any:
        # Not cached: a reference held across scene.Clear() would keep a stale node that the scene
        # keeps returning instead of creating a new one.
        return self.scene.GetSubjectHierarchyNode()

    def logic(self) -> Any:
        from PediatricBoneSegLib import PediatricBoneSegLogic

        logic = PediatricBoneSegLogic(self.scene, self.segmentationsLogic)
        _KEEP_ALIVE.append(logic)
        return logic


# --- Stand-ins for the Qt application layer -------------------------------------------------


class _ScriptedLoadableModule:
    """Stand-in: the Module base class only stores ``parent`` (a namespace of metadata here)."""

    def __init__(self, parent: Any) -> None:
        self.parent = parent


class _ScriptedLoadableModuleWidget:
    """Stand-in: never instantiated outside Slicer (the Widget needs real Qt)."""


class _ScriptedLoadableModuleLogic:
    """Stand-in: never instantiated outside Slicer (it only serves the parameter node)."""


class _ScriptedLoadableModuleTest(unittest.TestCase):
    """Stand-in: Slicer's test base is a unittest.TestCase with a ``delayDisplay`` that shows a
    message in the GUI; here it records the messages."""

    messages: list[str]

    def delayDisplay(self, message: str, msec: int = 0) -> None:
        self.messages = [*getattr(self, "messages", []), message]


def _parameterNodeWrapper(cls: type) -> type:
    """Stand-in decorator: the wrapped class is only declared, never bound to a node, here."""
    return cls


class _Annotation:
    """Stand-in for parameterNodeWrapper's validators (Choice, WithinRange): records arguments."""

    def __init__(self, *args: Any) -> None:
        self.args = args


@contextmanager
def application_standins(harness: MRMLHarness) -> Iterator[types.ModuleType]:
    """Import ``PediatricBoneSeg.py`` with the stand-ins above; yields the imported module.
    ``slicer.mrmlScene`` and the Segmentations module logic are the harness's real ones."""
    standins = {
        "qt": types.ModuleType("qt"),
        "ctk": types.ModuleType("ctk"),
        "slicer.ScriptedLoadableModule": types.ModuleType("slicer.ScriptedLoadableModule"),
        "slicer.parameterNodeWrapper": types.ModuleType("slicer.parameterNodeWrapper"),
    }
    base = standins["slicer.ScriptedLoadableModule"]
    base.ScriptedLoadableModule = _ScriptedLoadableModule
    base.ScriptedLoadableModuleWidget = _ScriptedLoadableModuleWidget
    base.ScriptedLoadableModuleLogic = _ScriptedLoadableModuleLogic
    base.ScriptedLoadableModuleTest = _ScriptedLoadableModuleTest
    wrapper = standins["slicer.parameterNodeWrapper"]
    wrapper.parameterNodeWrapper = _parameterNodeWrapper
    wrapper.Choice = wrapper.WithinRange = _Annotation
    segmentations = types.SimpleNamespace(logic=lambda: harness.segmentationsLogic)
    app = types.SimpleNamespace(connect=lambda signal, slot: harness.app_slots.setdefault(signal, []).append(slot))
    attributes = {
        "app": app,
        "mrmlScene": harness.scene,
        "modules": types.SimpleNamespace(segmentations=segmentations),
        "ScriptedLoadableModule": base,
        "parameterNodeWrapper": wrapper,
    }
    saved_modules = {name: sys.modules.get(name) for name in [*standins, "PediatricBoneSeg"]}
    saved_attributes = {name: getattr(slicer, name, None) for name in attributes}
    sys.modules.update(standins)
    for name, value in attributes.items():
        setattr(slicer, name, value)
    sys.path.insert(0, str(MODULE_DIR))
    try:
        sys.modules.pop("PediatricBoneSeg", None)
        yield importlib.import_module("PediatricBoneSeg")
    finally:
        sys.path.remove(str(MODULE_DIR))
        for name, module in saved_modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for name, value in saved_attributes.items():
            if value is None:
                delattr(slicer, name)
            else:
                setattr(slicer, name, value)
