"""Start-up: the command line imports nothing heavy before it needs it. ``pbseg --help`` and each
sub-command's ``--help`` (and so the argument check of every command) load no PyTorch, VTK,
matplotlib or training stack: PyTorch alone takes seconds to import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "vtk", "vtkmodules", "matplotlib", "monai", "tensorboard", "pbseg_training", "slicer")
PROBE = (
    "import json, sys\n"
    "from PediatricBoneSegLib.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
)


@pytest.mark.parametrize(
    "arguments", [["--help"], *([name, "--help"] for name in ("segment", "info", "phantoms", "validate"))]
)
def test_help_imports_nothing_heavy(arguments: list[str]) -> None:
    completed = subprocess.run([sys.executable, "-c", PROBE, *arguments], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    loaded = set(json.loads(completed.stdout.strip().splitlines()[-1]))
    assert "usage:" in completed.stdout
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_probe_sees_a_heavy_import() -> None:
    code = PROBE.replace(
        "from PediatricBoneSegLib.cli import main", "import torch\nfrom PediatricBoneSegLib.cli import main"
    )
    completed = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, check=False)
    assert "torch" in json.loads(completed.stdout.strip().splitlines()[-1])


def test_long_lived_imports_pause_the_collector_and_freeze_what_they_created() -> None:
    # In a child process: gc.freeze is process-wide and permanent.
    code = (
        "import gc, json\n"
        "from PediatricBoneSegLib.startup import long_lived_imports\n"
        "before = gc.get_freeze_count()\n"
        "with long_lived_imports():\n"
        "    inside = gc.isenabled()\n"
        "    import xml.dom.minidom\n"
        "print(json.dumps([inside, gc.isenabled(), gc.get_freeze_count() > before]))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(completed.stdout) == [False, True, True]
