"""PediatricBoneSeg core: Slicer-free library shared by the Slicer module, the CLI and training.

``import PediatricBoneSegLib`` never imports Slicer; ``PediatricBoneSegLogic`` (which needs MRML)
is resolved lazily on first access.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("PediatricBoneSegLogic", "SegmentationResult"):
        from .slicer import logic

        return getattr(logic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
