"""Which Python packages the segmentation needs and which of them are missing.

Inside Slicer, PyTorch comes from the PyTorch extension (it picks the build matching the GPU
driver); the other missing packages are pure additions installed with pip. Packages Slicer already
ships (numpy, scipy, SimpleITK, vtk) are never installed or upgraded by the module.
"""

from __future__ import annotations

import importlib.util

TORCH = "torch"
PIP_REQUIREMENTS: dict[str, str] = {"safetensors": "safetensors>=0.4"}  # import name -> pip requirement
REQUIRED: tuple[str, ...] = (TORCH, *PIP_REQUIREMENTS, "numpy", "scipy", "SimpleITK", "vtkmodules")


def missing_modules(names: tuple[str, ...] = REQUIRED) -> list[str]:
    """Import names of ``names`` that cannot be imported here (without importing them)."""
    return [name for name in names if importlib.util.find_spec(name) is None]
