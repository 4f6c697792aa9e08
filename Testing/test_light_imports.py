"""Light modules stay light: catalog, file I/O, results, host facts and the Slicer panel's helpers
import without PyTorch (seconds of start-up and gigabytes of memory that reading a file, writing
a case folder or opening the panel before PyTorch is installed must not need)."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT_MODULES = [
    "PediatricBoneSegLib",
    "PediatricBoneSegLib.catalog",
    "PediatricBoneSegLib.progress",
    "PediatricBoneSegLib.signals",
    "PediatricBoneSegLib.atomic",
    "PediatricBoneSegLib.host",
    "PediatricBoneSegLib.labelmaps",
    "PediatricBoneSegLib.image_checks",
    "PediatricBoneSegLib.options",
    "PediatricBoneSegLib.resources",
    "PediatricBoneSegLib.io",
    "PediatricBoneSegLib.io.volumes",
    "PediatricBoneSegLib.io.case_folder",
    "PediatricBoneSegLib.io.segmentation_file",
    "PediatricBoneSegLib.io.qc",
    "PediatricBoneSegLib.io.outputs",
    "PediatricBoneSegLib.io.dicom_seg",
    "PediatricBoneSegLib.io.cohort",
    "PediatricBoneSegLib.io.cohort_page",
    "PediatricBoneSegLib.shards",
    "PediatricBoneSegLib.pipeline",
    "PediatricBoneSegLib.pipeline.orientation",
    "PediatricBoneSegLib.pipeline.results",
    "PediatricBoneSegLib.pipeline.quality",
    "PediatricBoneSegLib.pipeline.postprocess",
    "PediatricBoneSegLib.pipeline.components",
    "PediatricBoneSegLib.pipeline.surfaces",
    "PediatricBoneSegLib.pipeline.morphometry",
    "PediatricBoneSegLib.pipeline.measurements",
    "PediatricBoneSegLib.cli.compare",
    "PediatricBoneSegLib.slicer.measurements",
    "PediatricBoneSegLib.slicer.parameters",
    "PediatricBoneSegLib.slicer.dependencies",
    "PediatricBoneSegLib.cli",
    "PediatricBoneSegLib.cli.batch",
    "PediatricBoneSegLib.cli.report",
]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_module_imports_without_torch(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]", f"{module} imports {completed.stdout.strip()}"


def test_the_check_sees_torch_when_it_is_imported() -> None:
    code = "import sys, PediatricBoneSegLib.pipeline.inference; print('torch' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert completed.stdout.strip() == "True", completed.stderr
