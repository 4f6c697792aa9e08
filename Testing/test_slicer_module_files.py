"""The Slicer extension's files: CMake lists every file, the .ui has every widget the module uses,
only the module file touches Qt, and the core library imports without Slicer."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import fields
from pathlib import Path

from PediatricBoneSegLib.slicer.parameters import SegmentParameters

ROOT = Path(__file__).resolve().parent.parent
MODULE_DIR = ROOT / "PediatricBoneSeg"
MODULE_FILE = MODULE_DIR / "PediatricBoneSeg.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "PediatricBoneSeg.ui"
LIB_DIR = MODULE_DIR / "PediatricBoneSegLib"


# --- CMake -----------------------------------------------------------------------------------


def cmake_lists(text: str) -> dict[str, list[str]]:
    """``set(NAME item item ...)`` blocks of a CMake file, with ``${MODULE_NAME}`` expanded."""
    text = re.sub(r"#[^\n]*", "", text)
    variables = dict(re.findall(r"set\(\s*(\w+)\s+(\w+)\s*\)", text))
    lists = {}
    for name, body in re.findall(r"set\(\s*(\w+)\s+([^)]*)\)", text):
        items = body.split()
        lists[name] = [re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), i) for i in items]
    return lists


def _listed(cmake_file: Path) -> set[str]:
    lists = cmake_lists(cmake_file.read_text())
    return set(lists.get("MODULE_PYTHON_SCRIPTS", [])) | set(lists.get("MODULE_PYTHON_RESOURCES", []))


def unlisted_files(module_dir: Path, cmake_file: Path) -> list[str]:
    """Python files, resources and library package data (the bundled model and sample) of
    ``module_dir`` that ``cmake_file`` does not list."""
    listed = _listed(cmake_file)
    on_disk = [p for p in module_dir.rglob("*.py") if "__pycache__" not in p.parts]
    on_disk += [p for p in (module_dir / "Resources").rglob("*") if p.is_file()]
    on_disk += [
        p
        for p in (module_dir / "PediatricBoneSegLib").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    return sorted(str(p.relative_to(module_dir)) for p in on_disk if str(p.relative_to(module_dir)) not in listed)


def missing_listed_files(module_dir: Path, cmake_file: Path) -> list[str]:
    """Files that ``cmake_file`` lists but ``module_dir`` lacks (CMake's configure step fails on them)."""
    return sorted(item for item in _listed(cmake_file) if not (module_dir / item).is_file())


def test_every_module_file_is_listed_in_cmake():
    assert unlisted_files(MODULE_DIR, MODULE_DIR / "CMakeLists.txt") == []
    assert missing_listed_files(MODULE_DIR, MODULE_DIR / "CMakeLists.txt") == []


def test_cmake_check_fails_when_a_file_is_removed_from_the_list(tmp_path):
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    for removed in ("PediatricBoneSegLib/slicer/logic.py", "Resources/UI/PediatricBoneSeg.ui"):
        assert f"  {removed}\n" in text
        text = text.replace(f"  {removed}\n", "")
    copy = tmp_path / "CMakeLists.txt"
    copy.write_text(text)
    assert unlisted_files(MODULE_DIR, copy) == [
        "PediatricBoneSegLib/slicer/logic.py",
        "Resources/UI/PediatricBoneSeg.ui",
    ]


def test_cmake_check_fails_when_a_listed_file_moved(tmp_path):
    """A list still naming the bundled model's old place (Resources/Models/) after it moved into the
    library's package data: both checks name it."""
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    moved = "PediatricBoneSegLib/resources/pediatric_bones.safetensors"
    assert f"  {moved}\n" in text
    copy = tmp_path / "CMakeLists.txt"
    copy.write_text(text.replace(f"  {moved}\n", "  Resources/Models/pediatric_bones.safetensors\n"))
    assert missing_listed_files(MODULE_DIR, copy) == ["Resources/Models/pediatric_bones.safetensors"]
    assert unlisted_files(MODULE_DIR, copy) == [moved]


def test_cmake_lists_the_bundled_model_and_sample_and_builds_a_scripted_module():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    lists = cmake_lists(text)
    resources = lists["MODULE_PYTHON_RESOURCES"]
    # Package data of PediatricBoneSegLib (importlib.resources), installed next to its code as in a wheel.
    assert "PediatricBoneSegLib/resources/pediatric_bones.safetensors" in resources
    assert "PediatricBoneSegLib/resources/knee_phantom.nii.gz" in resources
    assert "PediatricBoneSegLib/resources/__init__.py" in lists["MODULE_PYTHON_SCRIPTS"]
    assert "PediatricBoneSegLib/requirements.txt" in resources  # read by slicer/dependencies.py
    assert all(
        item.startswith(("Resources/", "PediatricBoneSegLib/resources/", "PediatricBoneSegLib/requirements.txt"))
        for item in resources
    )
    assert lists["MODULE_PYTHON_SCRIPTS"][0] == "PediatricBoneSeg.py"
    assert all(item.endswith(".py") for item in lists["MODULE_PYTHON_SCRIPTS"])
    assert "slicerMacroBuildScriptedModule(" in text and "slicer_add_python_unittest(SCRIPT" in text


def test_extension_cmake_metadata():
    text = (ROOT / "CMakeLists.txt").read_text()
    values = dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text))
    for key in ("HOMEPAGE", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert values.get(f"EXTENSION_{key}"), f"EXTENSION_{key} is empty"
    assert values["EXTENSION_CATEGORY"] == "Segmentation"
    assert values["EXTENSION_DEPENDS"] == "PyTorch"
    assert values["EXTENSION_ICONURL"].endswith("/Resources/Icons/PediatricBoneSeg.png")
    assert (ROOT / "Resources" / "Icons" / "PediatricBoneSeg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "add_subdirectory(PediatricBoneSeg)" in text


# --- The .ui file ----------------------------------------------------------------------------


def ui_problems(ui_file: Path, module_file: Path) -> list[str]:
    """Why ``ui_file`` is not a Qt Designer file that serves ``module_file`` (empty when it is)."""
    try:
        root = ElementTree.parse(ui_file).getroot()
    except ElementTree.ParseError as error:
        return [f"{ui_file.name} is not well-formed XML: {error}"]
    if root.tag != "ui" or root.get("version") != "4.0":
        return [f"{ui_file.name}: root element <{root.tag} version={root.get('version')}>, expected <ui version=4.0>"]
    problems = []
    top = root.findall("widget")
    if len(top) != 1 or top[0].get("class") != "qMRMLWidget":
        problems.append("expected exactly one top-level qMRMLWidget")
    widgets = {w.get("name"): w.get("class") for w in root.iter("widget")}
    names = [w.get("name") for w in root.iter("widget")]
    problems += [f"widget name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    custom = {c.findtext("class") for c in root.iter("customwidget")}
    problems += [
        f"widget {name!r} of class {cls!r} is neither a Qt class nor a declared custom widget"
        for name, cls in widgets.items()
        if not (cls or "").startswith("Q") and cls not in custom
    ]
    for connection in root.iter("connection"):
        for end in ("sender", "receiver"):
            if connection.findtext(end) not in widgets:
                problems.append(f"connection {end} {connection.findtext(end)!r} is not a widget")
    used = _ui_names_used(module_file)
    missing = sorted(used - set(widgets))
    problems += [f"{module_file.name} uses self.ui.{name}, which {ui_file.name} lacks" for name in missing]
    bound = {}
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = widget.get("name")
    parameters = {field.name for field in fields(SegmentParameters)}
    problems += [f"widget {w!r} binds unknown parameter {p!r}" for p, w in bound.items() if p not in parameters]
    problems += [f"parameter {p!r} has no widget (SlicerParameterName)" for p in sorted(parameters - set(bound))]
    return problems


def _ui_names_used(module_file: Path) -> set[str]:
    """Every ``<name>`` of ``self.ui.<name>`` in a Python file."""
    used = set()
    for node in ast.walk(ast.parse(module_file.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            used.add(node.attr)
    return used


def test_ui_file_serves_the_module():
    assert _ui_names_used(MODULE_FILE) >= {"applyButton", "progressBar", "statusLabel"}
    assert ui_problems(UI_FILE, MODULE_FILE) == []


def test_ui_check_fails_when_a_widget_is_removed(tmp_path):
    tree = ElementTree.parse(UI_FILE)
    for parent in tree.getroot().iter():
        for item in list(parent):
            widget = item.find("widget")
            if item.tag == "item" and widget is not None and widget.get("name") == "applyButton":
                parent.remove(item)
    copy = tmp_path / "PediatricBoneSeg.ui"
    tree.write(copy)
    assert ui_problems(copy, MODULE_FILE) == [
        "PediatricBoneSeg.py uses self.ui.applyButton, which PediatricBoneSeg.ui lacks"
    ]


def test_ui_check_fails_on_broken_xml_and_unbound_parameters(tmp_path):
    broken = tmp_path / "broken.ui"
    broken.write_text(UI_FILE.read_text().replace("</ui>", ""))
    assert "not well-formed XML" in ui_problems(broken, MODULE_FILE)[0]
    unbound = tmp_path / "unbound.ui"
    unbound.write_text(UI_FILE.read_text().replace("<string>smoothing</string>", "<string>smoothness</string>"))
    assert ui_problems(unbound, MODULE_FILE) == [
        "widget 'smoothingSliderWidget' binds unknown parameter 'smoothness'",
        "parameter 'smoothing' has no widget (SlicerParameterName)",
    ]


# --- Import boundaries -----------------------------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_module_file_imports_qt_and_only_logic_imports_slicer():
    assert "slicer.ScriptedLoadableModule" in _imported_modules(MODULE_FILE)
    for path in sorted(LIB_DIR.rglob("*.py")):
        imported = _imported_modules(path)
        assert not imported & {"qt", "ctk", "slicer.ScriptedLoadableModule"}, path
        if path.name != "logic.py":
            assert not any(name == "slicer" or name.startswith("slicer.") for name in imported), path


def test_core_library_imports_without_slicer_and_logic_lazily():
    code = (
        "import sys, PediatricBoneSegLib; assert 'slicer' not in sys.modules; "
        "from PediatricBoneSegLib import PediatricBoneSegLogic, SegmentationResult; "
        "assert 'slicer' not in sys.modules; print(PediatricBoneSegLogic.__module__)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "PediatricBoneSegLib.slicer.logic"


def test_copy_of_module_dir_detects_a_new_unlisted_file(tmp_path):
    copy = tmp_path / "PediatricBoneSeg"
    shutil.copytree(MODULE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors", "*.nii.gz"))
    (copy / "PediatricBoneSegLib" / "new_feature.py").write_text("")
    assert unlisted_files(copy, copy / "CMakeLists.txt") == ["PediatricBoneSegLib/new_feature.py"]
