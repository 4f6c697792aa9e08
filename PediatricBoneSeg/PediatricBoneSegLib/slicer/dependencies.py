"""Which Python packages the segmentation needs and which of them are missing.

Inside Slicer, PyTorch comes from the PyTorch extension (it picks the build matching the GPU
driver); the other missing packages are pure additions installed with pip. Packages Slicer already
ships (numpy, scipy, SimpleITK, vtk) are never installed or upgraded by the module.
"""

from __future__ import annotations

import importlib.util
import re
from importlib.resources import files

TORCH = "torch"


def requirements() -> dict[str, str]:
    """Distribution name -> requirement (``torch>=2.2,<3``), from the package's requirements.txt,
    the file pyproject.toml reads too."""
    text = (files("PediatricBoneSegLib") / "requirements.txt").read_text(encoding="utf-8")
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return {re.split(r"[<>=!~ ;\[]", line, maxsplit=1)[0]: line for line in lines if line}


TORCH_REQUIREMENT = requirements()[TORCH][len(TORCH) :]  # the version specifier, for the PyTorch extension
PIP_REQUIREMENTS: dict[str, str] = {  # import name -> pip requirement
    "safetensors": requirements()["safetensors"],
    "skimage": requirements()["scikit-image"],
    "matplotlib": requirements()["matplotlib"],  # the QC picture of an exported case folder
}
# Needed by the command line only: progress bars, and DICOM SEG of DICOM-series inputs (a Slicer
# export starts from a volume node and writes no SEG).
COMMAND_LINE_ONLY = ("tqdm", "highdicom")
REQUIRED: tuple[str, ...] = (TORCH, *PIP_REQUIREMENTS, "numpy", "scipy", "SimpleITK", "vtkmodules")


def missing_modules(names: tuple[str, ...] = REQUIRED) -> list[str]:
    """Import names of ``names`` that cannot be imported here (without importing them)."""
    return [name for name in names if importlib.util.find_spec(name) is None]
