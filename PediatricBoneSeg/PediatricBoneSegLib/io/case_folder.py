"""Where a case may be written, decided before any work and again at the final move, without
PyTorch, VTK or matplotlib (the command line checks it before it loads anything heavy): the case
folder's name (``case_folder_name``), a writable output root, and what an existing folder may be
replaced by (only an earlier pbseg case folder that holds no input, with ``overwrite``)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

REPORT_FILE = "report.json"
MORPHOMETRY_FILE = "morphometry.csv"
MEASUREMENTS_FILE = "measurements.csv"  # clinical measurements (pipeline.measurements)
QC_FILE = "qc.png"


def case_folder_name(name: str) -> str:
    """A folder name for a case called ``name`` (a file name, a DICOM series, a volume node):
    characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``; never empty or
    hidden."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "volume"


class CaseFolderExistsError(FileExistsError):
    """The case folder exists and may not be replaced (no ``overwrite``)."""


class OutputError(ValueError):
    """Outputs cannot be written where asked; the message names the path and the problem."""


def check_output_root(outdir: str | Path) -> Path:
    """Raise ``OutputError`` unless ``outdir`` is, or can be created as, a writable folder."""
    outdir = Path(outdir)
    existing = outdir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{existing}: exists and is not a folder; cannot write outputs into {outdir}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{existing}: folder is not writable; cannot write outputs into {outdir}")
    return outdir


def check_case_target(
    outdir: str | Path, case: str, overwrite: bool = False, inputs: Sequence[str | Path] = ()
) -> Path:
    """The folder ``OUTDIR/<case>`` if the case may be written there, else raise: ``OutputError``
    (bad case name, unwritable root, a target that is no pbseg case folder, holds files pbseg did not
    write or holds one of ``inputs``), ``CaseFolderExistsError`` (exists, no ``overwrite``)."""
    if not case or case in (".", "..") or case.startswith(".") or any(c in case for c in "/\\"):
        raise OutputError(f"{case!r}: not a usable case folder name")
    target = check_output_root(outdir) / case
    if not target.exists() and not target.is_symlink():
        return target
    if target.is_symlink() or not target.is_dir():
        raise OutputError(f"{target}: exists and is not a case folder; it is never replaced")
    resolved = target.resolve()
    for given in inputs:
        path = Path(given).resolve()
        if path == resolved or resolved in path.parents:
            raise OutputError(f"{target}: holds the input {given}; it is never replaced (choose another -o)")
    if not overwrite:
        raise CaseFolderExistsError(f"{target}: output folder exists (use --overwrite to replace it)")
    foreign = _foreign_entries(target)
    if foreign is None:
        raise OutputError(f"{target}: not a case folder written by pbseg (no readable {REPORT_FILE}); not replaced")
    if foreign:
        listed = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise OutputError(
            f"{target}: holds files pbseg did not write ({listed}); not replaced (move them, or choose another -o)"
        )
    return target


def finished_case(folder: str | Path) -> bool:
    """Whether ``folder`` is a finished pbseg case: its ``report.json`` is a complete pbseg report
    (it names the pbseg version and lists its files) and every file it lists is there.
    ``--skip-existing`` keeps such a case and redoes any other."""
    return finished_report(folder) is not None


def finished_report(folder: str | Path) -> dict | None:
    """The parsed ``report.json`` of a finished pbseg case (``finished_case``), None for any other
    folder: read once for a caller that needs both the verdict and the report."""
    folder = Path(folder)
    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        files = report["files"] if isinstance(report, dict) and "pbseg_version" in report else None
    except (OSError, ValueError, KeyError):
        return None
    if not isinstance(files, list) or REPORT_FILE not in files:
        return None
    return report if all(isinstance(name, str) and (folder / name).is_file() for name in files) else None


def _foreign_entries(folder: Path) -> list[str] | None:
    """Names in ``folder`` that its ``report.json`` does not list (None: no pbseg report)."""
    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        files = set(report["files"]) if "pbseg_version" in report else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if files is None:
        return None
    return sorted(entry.name for entry in folder.iterdir() if entry.name not in files or not entry.is_file())
