"""PediatricBoneSeg core: Slicer-free library shared by the Slicer module, the CLI and training.

``import PediatricBoneSegLib`` never imports Slicer; ``PediatricBoneSegLogic`` (which needs MRML)
and the pipelines' API ``segment_file`` (``api``) are resolved lazily on first access.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("PediatricBoneSegLogic", "SegmentationResult"):
        from .slicer import logic

        return getattr(logic, name)
    if name in ("segment_file", "SegmentedCase"):  # the Python API (api.py), with PyTorch and VTK
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
