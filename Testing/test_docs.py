"""The documentation points at things that exist, and the README's commands run.

For README.md, CHANGELOG.md and every docs/*.md: each relative Markdown link must name an existing file (and its
``#anchor`` a heading of the target, slugged as GitHub makes heading anchors), and each repository
path named in inline code or in a code block (``training/configs/bundled.toml``,
``Testing/test_docs.py``, ``PediatricBoneSegLib/catalog.py``...) must exist. The README's two
commands must be targets of the Makefile, each ``pbseg`` command of its quick start must parse with
pbseg's own argument parser, and ``pbseg <sub-command> --help`` must run for each of them.
No network; a few seconds.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^ {0,3}(```|~~~)")
LINK = re.compile(r"\[(?:[^\[\]`]|`[^`]*`)*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# A path into the repository: one of its top-level folders (or the two packages' import names,
# which the documents use for their files), then the rest of the path.
PATH_PREFIXES = {
    "PediatricBoneSeg/": "PediatricBoneSeg/",
    "PediatricBoneSegLib/": "PediatricBoneSeg/PediatricBoneSegLib/",
    "pbseg_training/": "training/pbseg_training/",
    "training/": "training/",
    "Testing/": "Testing/",
    "docs/": "docs/",
    "benchmarks/": "benchmarks/",
    "Resources/": "Resources/",
    ".ci/": ".ci/",
}
REPO_PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(re.escape(prefix) for prefix in PATH_PREFIXES) + r")[\w./-]*)")
ROOT_FILES = {
    "README.md",
    "CHANGELOG.md",
    "CITATION.cff",
    "Makefile",
    "pyproject.toml",
    "constraints.txt",
    "CMakeLists.txt",
}
FILE_EXTENSIONS = {
    "py",
    "md",
    "toml",
    "json",
    "txt",
    "csv",
    "png",
    "gz",
    "nii",
    "nrrd",
    "mha",
    "sh",
    "cff",
    "ui",
    "safetensors",
    "html",
    "npz",
    "stl",
    "obj",
    "vtp",
    "ply",
    "dcm",
    "pt",
    "pth",
}
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:...


def split_code(text: str) -> tuple[list[str], list[str]]:
    """The document's prose lines and its fenced code blocks' lines."""
    prose, code, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        (code if fenced else prose).append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    prose, _ = split_code(document.read_text(encoding="utf-8"))
    seen: Counter[str] = Counter()
    found = set()
    for line in prose:
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            found.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return found


def link_problems(document: Path, root: Path = ROOT) -> list[str]:
    """Relative links of ``document`` whose file or anchor does not exist."""
    prose, _ = split_code(document.read_text(encoding="utf-8"))
    text = INLINE_CODE.sub(lambda match: "x" * len(match.group(0)), "\n".join(prose))
    problems = []
    for match in LINK.finditer(text):
        target = match.group(1)
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        name = f"{document.relative_to(root)}: link {target!r}"
        if not path.exists():
            problems.append(f"{name}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            problems.append(f"{name}: no heading with the anchor #{anchor} in {path.relative_to(root)}")
    return problems


def named_paths(document: Path) -> list[str]:
    """Repository paths named in ``document``'s inline code and code blocks."""
    prose, code = split_code(document.read_text(encoding="utf-8"))
    spans = [span for line in prose for span in INLINE_CODE.findall(line)] + code
    paths = [path.rstrip(".,:;") for span in spans for path in REPO_PATH.findall(span)]
    paths += [span for span in spans if span.strip() in ROOT_FILES]
    return sorted(set(paths))


def path_problems(document: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for named in named_paths(document):
        prefix = next((prefix for prefix in PATH_PREFIXES if named.startswith(prefix)), "")
        path = root / (PATH_PREFIXES[prefix] + named[len(prefix) :] if prefix else named.strip())
        module, _, attribute = path.name.rpartition(".")  # protocols.SIGNAL_RANGES: a module's attribute
        is_attribute = (
            bool(module)
            and attribute.isidentifier()
            and attribute not in FILE_EXTENSIONS
            and (path.parent / f"{module}.py").is_file()
        )
        if not path.exists() and not is_attribute:
            problems.append(f"{document.relative_to(root)}: names {named!r}, which does not exist")
    return problems


def section(text: str, title: str) -> str:
    """The lines under the level-2 heading ``title``, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def commands(text: str) -> list[list[str]]:
    """The commands of the fenced code blocks of ``text`` (continuation lines joined, comments dropped)."""
    _, code = split_code(text)
    joined = "\n".join(code).replace("\\\n", " ")
    return [tokens for line in joined.splitlines() if (tokens := shlex.split(line, comments=True))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_links_and_anchors_exist(document: Path) -> None:
    assert not link_problems(document), "\n".join(link_problems(document))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_named_paths_exist(document: Path) -> None:
    assert not path_problems(document), "\n".join(path_problems(document))


def test_the_checks_find_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A `quoted` section: here\n", encoding="utf-8")
    (tmp_path / "Testing").mkdir()
    (tmp_path / "Testing" / "test_x.py").write_text("", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n[fine](other.md#a-quoted-section-here) [same page](#page) [web](https://example.org/x)\n"
        "[gone](missing.md) [bad anchor](other.md#nowhere) [bad here](#nowhere)\n\n"
        "`Testing/test_x.py` exists, `Testing/test_y.py` does not, nor `PediatricBoneSegLib/nothing.py`.\n\n"
        "```bash\npython benchmarks/absent.py   # [not a link](missing.md)\n```\n",
        encoding="utf-8",
    )
    links = link_problems(page, tmp_path)
    assert len(links) == 3, links
    assert any("missing.md" in problem and "no such file" in problem for problem in links)
    assert any("#nowhere in docs/other.md" in problem for problem in links)
    assert any("#nowhere in docs/page.md" in problem for problem in links)
    paths = path_problems(page, tmp_path)
    assert sorted(problem.split("'")[1] for problem in paths) == [
        "PediatricBoneSegLib/nothing.py",
        "Testing/test_y.py",
        "benchmarks/absent.py",
    ], paths


def test_the_two_commands_are_make_targets() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    two = commands(section(readme, "The two commands"))
    assert two == [["make", "demo"], ["make", "test"]], two
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"the Makefile has no '{target}' target"


def _quick_start() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = [tokens for tokens in commands(section(readme, "Command line quick start")) if tokens[0] == "pbseg"]
    assert found, "the README's quick start has no pbseg command"
    return found


def test_quick_start_commands_parse() -> None:
    from PediatricBoneSegLib.cli import build_parser

    for tokens in _quick_start():
        try:
            build_parser().parse_args(tokens[1:])
        except SystemExit as error:
            pytest.fail(f"the README's quick-start command does not parse (exit {error.code}): {shlex.join(tokens)}")


def test_quick_start_sub_commands_answer_help() -> None:
    script = shutil.which("pbseg", path=str(Path(sys.executable).parent))
    main = "import sys; from PediatricBoneSegLib.cli import main; sys.exit(main())"
    pbseg = [script] if script else [sys.executable, "-c", main]
    for sub_command in sorted({tokens[1] for tokens in _quick_start()}):
        done = subprocess.run([*pbseg, sub_command, "--help"], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"pbseg {sub_command} --help: exit {done.returncode}\n{done.stderr}"
        assert "usage: pbseg" in done.stdout


def test_citation_names_the_package_version() -> None:
    from PediatricBoneSegLib import __version__

    citation = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(r"^cff-version: 1\.2\.0$", citation, re.MULTILINE)
    assert re.search(rf"^version: {re.escape(__version__)}$", citation, re.MULTILINE), "CITATION.cff's version"
    assert re.search(r"^preferred-citation:\n  type: article$", citation, re.MULTILINE)
