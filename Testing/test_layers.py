"""The architecture's import rules (docs/architecture.md, "Layers"), checked on the code: each
package of PediatricBoneSegLib imports only the layers below it, so the pipeline never reads files,
the file writers never need PyTorch, and nothing but the Slicer side knows MRML."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "PediatricBoneSeg" / "PediatricBoneSegLib"
CORE = {
    "catalog",
    "options",
    "progress",
    "signals",
    "atomic",
    "host",
    "labelmaps",
    "resources",
    "image_checks",
    "shards",
    "startup",
}
# What each unit may import from the library (besides itself). pipeline modules that io may use are
# the light ones: result types, orientation, morphometry, clinical measurements (no PyTorch).
ALLOWED: dict[str, set[str]] = {
    **{module: CORE for module in CORE},
    "network": CORE,
    "pipeline": CORE | {"network"},
    "io": CORE
    | {"pipeline.results", "pipeline.orientation", "pipeline.morphometry", "pipeline.measurements", "(root)"},
    "case": CORE | {"io", "pipeline", "network"},
    "api": CORE | {"case", "io", "pipeline", "network"},
    "slicer": CORE | {"case", "pipeline", "network"},
    "cli": CORE | {"case", "io", "pipeline", "network", "(root)", "pbseg_training"},
    "(root)": {"slicer", "api"},
}


def _is_module(dotted: str) -> bool:
    path = LIB.joinpath(*dotted.split(".")) if dotted else LIB
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Library modules imported by ``path`` (at any depth of the file), as dotted names below
    PediatricBoneSegLib ("" for the package itself); pbseg_training as such."""
    package = list(path.relative_to(LIB).parent.parts)  # of a module, or of an __init__.py: its own
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join([*package[: len(package) - (node.level - 1)], *([node.module] if node.module else [])])
            targets = [f"PediatricBoneSegLib.{base}".rstrip(".")]
            targets += [f"{targets[0]}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "pbseg_training":
                found.add("pbseg_training")
            elif target.split(".")[0] == "PediatricBoneSegLib":
                dotted = target.removeprefix("PediatricBoneSegLib").lstrip(".")
                if _is_module(dotted) and (dotted or target == "PediatricBoneSegLib"):
                    found.add(dotted)
    # "from .pipeline import inference" names both the package and the module: keep the deepest.
    return {name for name in found if not any(other.startswith(name + ".") for other in found)}


def _unit(dotted: str) -> str:
    return dotted.split(".")[0] if dotted else "(root)"


def _allowed(unit: str, imported: str) -> bool:
    allowed = ALLOWED[unit]
    return _unit(imported) in allowed or any(imported == a or imported.startswith(a + ".") for a in allowed)


def test_every_module_imports_only_the_layers_below_it() -> None:
    violations = []
    for path in sorted(LIB.rglob("*.py")):
        relative = path.relative_to(LIB).with_suffix("")
        unit = "(root)" if relative.parts == ("__init__",) else relative.parts[0]
        for imported in _imports(path):
            if _unit(imported) != unit and not _allowed(unit, imported):
                violations.append(f"{path.relative_to(LIB)} imports {imported or 'PediatricBoneSegLib'}")
    assert violations == []


def test_the_rule_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The pipeline reading files would break the inferer's independence from files."""
    assert not _allowed("pipeline", "io.volumes") and not _allowed("io", "pipeline.inference")
    assert not _allowed("network", "pipeline.preprocessing") and _allowed("case", "io.outputs")
