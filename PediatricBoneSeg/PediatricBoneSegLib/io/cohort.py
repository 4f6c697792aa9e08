"""A cohort: every case folder of an output folder gathered into one table (``pbseg report``).

Each case folder's ``report.json`` (its clinical ``measurements`` too) and ``morphometry.csv``
become one ``CohortCase``; a folder
without a complete report (``finished_case``) is listed as ``unfinished``, never guessed. The
status puts what needs a look first: unfinished, then ``check`` (warnings or unreliable bones,
most unreliable bones first), then ``ok``. The age comes from the case or input name when it
names one (``age12``, ``age_7.5``, ``12y``, ``9yo``, ``14years``). Light: no image library.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import UNION_BONES
from .case_folder import MORPHOMETRY_FILE, QC_FILE, REPORT_FILE, finished_report

STATUS_ORDER = ("unfinished", "check", "ok")
_AGE = re.compile(
    r"(?:^|[^a-z0-9])age[_-]?(\d{1,2}(?:[.p]\d+)?)(?![0-9])"
    r"|(?:^|[^a-z0-9.])(\d{1,2}(?:[.p]\d+)?)[_-]?(?:y|yo|yr|yrs|year|years)(?![a-z])",
    re.IGNORECASE,
)
_FIXED_COLUMNS = (
    "case", "status", "joint", "joint_auto_detected", "joint_confidence", "age_years", "warnings",
    "unreliable_bones", "model", "input", "created",
)  # fmt: skip


@dataclass
class CohortCase:
    """One case folder. ``bones``: bone key -> its fields (``present``, volumes in mm3,
    ``quality``, ``reliable``, and every morphometry.csv column), for the bones of its joint.
    ``measurements``: key -> the report's clinical measurement (``value`` None when not
    measurable, ``reason`` why, ``text`` for people, ``unit``). ``problem``: why an unfinished
    folder is not a finished case."""

    folder: Path
    status: str
    joint: str = ""
    auto_detected: bool | None = None
    joint_confidence: float | None = None
    age_years: float | None = None
    warnings: list[str] = field(default_factory=list)
    unreliable: list[str] = field(default_factory=list)
    bones: dict[str, dict[str, Any]] = field(default_factory=dict)
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: str = ""
    input: str = ""
    created: str = ""
    problem: str = ""

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def qc_file(self) -> Path | None:
        path = self.folder / QC_FILE
        return path if self.status != "unfinished" and path.is_file() else None

    def sort_key(self) -> tuple:
        return (STATUS_ORDER.index(self.status), -len(self.unreliable), -len(self.warnings), self.name)


def gather_cohort(outdir: str | Path) -> list[CohortCase]:
    """Every case folder directly in ``outdir`` (hidden staging folders are skipped), sorted by
    ``CohortCase.sort_key``. Raises ``NotADirectoryError`` when ``outdir`` is no folder."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise NotADirectoryError(f"{outdir}: not a folder")
    folders = sorted(p for p in outdir.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted((read_case(folder) for folder in folders), key=CohortCase.sort_key)


def read_case(folder: Path) -> CohortCase:
    """The ``CohortCase`` of one folder."""
    report = finished_report(folder)
    if report is None:
        reason = "no report.json" if not (folder / REPORT_FILE).is_file() else "report.json incomplete or files missing"
        return CohortCase(folder, "unfinished", problem=reason)
    bones = {key: dict(fields) for key, fields in report.get("bones", {}).items()}
    morphometry = folder / MORPHOMETRY_FILE
    if morphometry.is_file():
        with morphometry.open(newline="", encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                bones.setdefault(row["bone"], {}).update(
                    {column: _number(value) for column, value in row.items() if column not in ("bone", "display_name")}
                )
    unreliable = list(report.get("unreliable_bones", []))
    warnings = list(report.get("warnings", []))
    model = report.get("model", {})
    return CohortCase(
        folder,
        "check" if warnings or unreliable else "ok",
        joint=report.get("joint", ""),
        auto_detected=report.get("joint_auto_detected"),
        joint_confidence=report.get("joint_confidence"),
        age_years=age_from_names(report.get("case", ""), report.get("input", "")),
        warnings=warnings,
        unreliable=unreliable,
        bones=bones,
        measurements={m["key"]: m for m in report.get("measurements", []) if isinstance(m, dict) and "key" in m},
        model=f"{model.get('name', '')} {model.get('version', '')}".strip(),
        input=report.get("input", ""),
        created=report.get("created", ""),
    )


def age_from_names(*names: str) -> float | None:
    """The age in years that the first of ``names`` (case names, paths) naming one names."""
    for name in names:
        for part in reversed(Path(name).parts):  # the file name first, then its folders
            match = _AGE.search(part)
            if match:
                return float((match.group(1) or match.group(2)).replace("p", "."))
    return None


def cohort_bones(cases: list[CohortCase]) -> list[str]:
    """The bones of the cohort's joints, in catalog (union) order."""
    present = {bone for case in cases for bone in case.bones}
    return [bone.key for bone in UNION_BONES if bone.key in present]


def status_counts(cases: list[CohortCase]) -> str:
    """How many cases have each status, in ``STATUS_ORDER``: "1 unfinished, 2 check, 3 ok"."""
    return ", ".join(f"{sum(case.status == status for case in cases)} {status}" for status in STATUS_ORDER)


def cohort_measurements(cases: list[CohortCase]) -> list[str]:
    """The clinical measurement keys of the cohort, in the order they first appear."""
    return list(dict.fromkeys(key for case in cases for key in case.measurements))


def cohort_csv(cases: list[CohortCase]) -> str:
    """The cohort table as CSV text: one row per case, the fixed columns, then per clinical
    measurement its value (``measurement_<key>``) and why it is missing (``measurement_<key>_reason``),
    then per bone of the cohort ``<bone>_<field>`` for each of its report and morphometry fields
    (empty when the case has no such bone or measurement)."""
    bones, keys = cohort_bones(cases), cohort_measurements(cases)
    fields: dict[str, list[str]] = {bone: [] for bone in bones}
    for case in cases:
        for bone, values in case.bones.items():
            fields[bone].extend(name for name in values if name not in fields[bone] and name != "label")
    measured = [f"measurement_{key}{suffix}" for key in keys for suffix in ("", "_reason")]
    columns = [*_FIXED_COLUMNS, *measured, *(f"{bone}_{name}" for bone in bones for name in fields[bone])]
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for case in cases:
        row: dict[str, Any] = {
            "case": case.name,
            "status": case.status,
            "joint": case.joint,
            "joint_auto_detected": case.auto_detected,
            "joint_confidence": case.joint_confidence,
            "age_years": case.age_years,
            "warnings": " | ".join(case.warnings) or case.problem,
            "unreliable_bones": ";".join(case.unreliable),
            "model": case.model,
            "input": case.input,
            "created": case.created,
        }
        for key, measurement in case.measurements.items():
            row[f"measurement_{key}"] = measurement.get("value")
            row[f"measurement_{key}_reason"] = measurement.get("reason") or None
        for bone, values in case.bones.items():
            row.update({f"{bone}_{name}": _cell(value) for name, value in values.items() if name != "label"})
        writer.writerow({column: "" if row.get(column) is None else row[column] for column in columns})
    return stream.getvalue()


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _cell(value: Any) -> Any:
    """Nested report fields (the quality evidence) as compact JSON in one cell."""
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
