"""Packaging: the bundled model and sample volume are package data of PediatricBoneSegLib, found
through ``importlib.resources``; a built wheel and a non-editable ``pip install .`` give a working
``pbseg segment`` of the bundled sample with the bundled model, away from the source tree."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PediatricBoneSegLib.pipeline import inference

ROOT = Path(__file__).resolve().parent.parent
LIB_DIR = ROOT / "PediatricBoneSeg" / "PediatricBoneSegLib"
# What a wheel is built from: the packages and the files pyproject.toml names.
SOURCES = ("pyproject.toml", "README.md", "PediatricBoneSeg/PediatricBoneSegLib", "training/pbseg_training")
# This project's entries in an environment's site-packages: hidden from the fresh environments.
PROJECT_ENTRIES = ("PediatricBoneSegLib", "pbseg_training", "pediatric_bone_seg", "__editable__")
CASE_FILES = {"segmentation.seg.nrrd", "labels.nii.gz", "morphometry.csv", "measurements.csv", "report.json", "qc.png"}


def _data_files(package_dir: Path) -> list[Path]:
    """Every file of the package that is not Python source or bytecode."""
    return sorted(
        p
        for p in package_dir.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )


def test_bundled_model_and_sample_are_package_data() -> None:
    from PediatricBoneSegLib.resources import bundled_model_path, bundled_sample_path

    package = Path(str(files("PediatricBoneSegLib")))
    for path in (inference.bundled_model_path(), bundled_model_path(), bundled_sample_path()):
        assert path.is_file() and path.resolve().is_relative_to(package.resolve()), path
    assert inference.bundled_model_path() == bundled_model_path()
    assert bundled_sample_path().name == "knee_phantom.nii.gz"


def test_pyproject_ships_every_data_file_of_the_library() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    data = _data_files(LIB_DIR)
    assert data, "the library ships no data files"
    unshipped = []
    for path in data:
        relative = path.relative_to(LIB_DIR.parent)
        package = ".".join(relative.parent.parts)
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in package_data.get(package, [])):
            unshipped.append(str(relative))
    assert unshipped == []


def test_bundled_files_of_a_zipped_package_are_real_files(tmp_path: Path) -> None:
    """Imported from a zip archive, the package hands out temporary copies (safetensors and
    SimpleITK need a path), removed when the interpreter exits."""
    archive = tmp_path / "lib.zip"
    with zipfile.ZipFile(archive, "w") as stream:
        for path in [LIB_DIR / "__init__.py", *(LIB_DIR / "resources").glob("*")]:
            if path.is_file():
                stream.write(path, path.relative_to(LIB_DIR.parent).as_posix())
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import PediatricBoneSegLib.resources as r; "
        "paths = [r.bundled_sample_path(), r.bundled_model_path(), r.bundled_sample_path()]; "
        "print(json.dumps({'module': r.__file__, 'paths': [str(p) for p in paths], "
        "'files': [p.is_file() for p in paths], 'sample': paths[0].read_bytes().hex()[:64]}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code, str(archive)], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout)
    assert found["module"].startswith(str(archive))
    assert found["files"] == [True, True, True] and found["paths"][0] == found["paths"][2]  # extracted once
    assert not any(path.startswith(str(archive)) for path in found["paths"])
    assert found["sample"] == (LIB_DIR / "resources" / "knee_phantom.nii.gz").read_bytes().hex()[:64]
    assert not any(Path(path).exists() for path in found["paths"])  # the copies are gone


# --- Installed from a wheel and from the source tree, in fresh environments -------------------


def _environment() -> dict[str, str]:
    """The child processes see neither the source tree nor this environment's packages, and pip
    never looks for an index."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1", PIP_NO_INPUT="1")
    return env


def _run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, check=False, cwd=cwd, env=_environment()
    )
    assert completed.returncode == 0, f"{command}\n{completed.stdout}\n{completed.stderr}"
    return completed


def _source_copy(destination: Path) -> Path:
    """The files a build reads, copied: building writes build/ and *.egg-info into its source."""
    for name in SOURCES:
        source, target = ROOT / name, destination / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def _dependencies(destination: Path) -> Path:
    """This environment's installed packages (links), without this project's own entries: the
    dependencies of the fresh environments, with no network and no editable-install finder."""
    destination.mkdir()
    for site in dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])):
        for entry in Path(site).iterdir():
            if entry.name.startswith(PROJECT_ENTRIES) or entry.suffix == ".pth" or (destination / entry.name).exists():
                continue
            (destination / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return destination


def _fresh_environment(prefix: Path, dependencies: Path, install: Path, cwd: Path) -> Path:
    """A new virtual environment with ``install`` (a wheel or a source tree) pip-installed, not
    editable; its dependencies come from ``dependencies``. Returns its site-packages."""
    _run([sys.executable, "-m", "venv", "--without-pip", prefix], cwd)
    python = prefix / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd).stdout.strip())
    (site / "project_dependencies.pth").write_text(f"{dependencies}\n")
    # pip runs in the new environment (--python): it installs there and builds with its setuptools.
    pip = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        "--no-build-isolation",
    ]
    _run([*pip, "-q", install], cwd)
    return site


@pytest.mark.slow
def test_wheel_and_pip_install_give_a_working_pbseg_segment(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"  # outside the source tree: nothing is found through the cwd
    elsewhere.mkdir()
    dependencies = _dependencies(tmp_path / "dependencies")
    source = _source_copy(tmp_path / "wheel-source")
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            dist,
            source,
        ],
        elsewhere,
    )
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as stream:
        names = set(stream.namelist())
    assert {
        "PediatricBoneSegLib/resources/pediatric_bones.safetensors",
        "PediatricBoneSegLib/resources/knee_phantom.nii.gz",
    } <= names
    installs = {"wheel": wheel, "source": _source_copy(tmp_path / "tree-source")}
    for kind, install in installs.items():
        prefix = tmp_path / f"{kind}-env"
        site = _fresh_environment(prefix, dependencies, install, elsewhere)
        where = json.loads(
            _run(
                [
                    prefix / "bin" / "python",
                    "-c",
                    "import json, PediatricBoneSegLib as p, PediatricBoneSegLib.pipeline.inference as i, "
                    "PediatricBoneSegLib.resources as r; print(json.dumps([p.__file__, "
                    "str(i.bundled_model_path()), str(r.bundled_sample_path())]))",
                ],
                elsewhere,
            ).stdout
        )
        package = site / "PediatricBoneSegLib"
        assert [Path(path) for path in where] == [
            package / "__init__.py",
            package / "resources" / "pediatric_bones.safetensors",
            package / "resources" / "knee_phantom.nii.gz",
        ], kind
        sample, out = Path(where[2]), tmp_path / f"{kind}-out"
        _run([prefix / "bin" / "pbseg", "segment", sample, "-o", out], elsewhere)
        case = out / "knee_phantom"
        assert {p.name for p in case.iterdir()} >= CASE_FILES | {"femur.stl", "tibia.stl", "patella.stl", "fibula.stl"}
        report = json.loads((case / "report.json").read_text())
        assert report["joint"] == "knee" and report["joint_auto_detected"], kind
        assert Path(report["model_file"]) == Path(where[1]) and report["model"]["name"] == "pediatric_bones"
        assert set(report["bones"]) == {"femur", "tibia", "patella", "fibula"} and report["warnings"] == []
        labels, image = sitk.ReadImage(str(case / "labels.nii.gz")), sitk.ReadImage(str(sample))
        assert labels.GetSize() == image.GetSize() and labels.GetSpacing() == image.GetSpacing()
        assert np.unique(sitk.GetArrayViewFromImage(labels)).tolist() == [0, 1, 2, 3, 4]


def test_version_and_requirements_have_one_source() -> None:
    """pyproject.toml takes the version from ``PediatricBoneSegLib.__version__`` and the
    requirements from PediatricBoneSegLib/requirements.txt, the file the Slicer module reads too."""
    import importlib.metadata

    import PediatricBoneSegLib
    from PediatricBoneSegLib.slicer.dependencies import PIP_REQUIREMENTS, TORCH_REQUIREMENT, requirements

    assert importlib.metadata.version("pediatric-bone-seg") == PediatricBoneSegLib.__version__
    from packaging.requirements import Requirement

    def parsed(texts: list[str]) -> set[tuple[str, str]]:
        return {(requirement.name, str(requirement.specifier)) for requirement in map(Requirement, texts)}

    installed = [r for r in importlib.metadata.requires("pediatric-bone-seg") or [] if "extra ==" not in r]
    assert parsed(installed) == parsed(list(requirements().values()))
    assert requirements()["torch"] == "torch" + TORCH_REQUIREMENT and TORCH_REQUIREMENT.startswith(">=")
    assert PIP_REQUIREMENTS["safetensors"] == requirements()["safetensors"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch' not in pyproject and "version =" not in pyproject.split("[tool.setuptools.dynamic]")[0]


def test_the_slicer_module_installs_every_requirement_slicer_lacks() -> None:
    """Every requirement is shipped by Slicer, installed by the module (the PyTorch extension, or
    pip), or imported only where a Slicer export never goes (the command line, DICOM SEG)."""
    import re

    from PediatricBoneSegLib.slicer.dependencies import COMMAND_LINE_ONLY, PIP_REQUIREMENTS, TORCH, requirements

    shipped_by_slicer = {"numpy", "scipy", "SimpleITK", "vtk"}
    pip_installed = {re.split(r"[<>=!~ ;\[]", line, maxsplit=1)[0] for line in PIP_REQUIREMENTS.values()}
    for name in requirements():
        assert name in shipped_by_slicer | pip_installed | {TORCH, *COMMAND_LINE_ONLY}, name
    allowed = {"tqdm": ("cli/",), "highdicom": ("io/dicom_seg.py",)}
    for path in LIB_DIR.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        relative = path.relative_to(LIB_DIR).as_posix()
        for module in COMMAND_LINE_ONLY:
            if re.search(rf"^\s*(import|from) {module}\b", source, re.MULTILINE):
                assert relative.startswith(allowed[module]), f"{relative} imports {module}"
