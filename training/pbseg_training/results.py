"""Per-case evaluation records of an experiment and their CSV file (one row per scheme, fold,
case and bone), from which the report can be rebuilt without retraining."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PediatricBoneSegLib.atomic import write_text

from .metrics import METRIC_KEYS

KEY_COLUMNS = ("scheme", "fold", "joint", "case", "bone")


@dataclass(frozen=True)
class CaseResult:
    """The metrics (``metrics.mask_metrics`` units: fractions, mm) of one bone of one test case."""

    scheme: str
    fold: int
    joint: str
    case: str
    bone: str
    metrics: dict[str, float]

    @property
    def pair_key(self) -> tuple[int, str, str, str]:
        """What pairs two schemes' results in a paired test: the same bone of the same case."""
        return (self.fold, self.joint, self.case, self.bone)


def save_results(path: str | Path, results: Iterable[CaseResult]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow((*KEY_COLUMNS, *METRIC_KEYS))
    for r in results:
        writer.writerow((r.scheme, r.fold, r.joint, r.case, r.bone, *(repr(float(r.metrics[k])) for k in METRIC_KEYS)))
    return write_text(path, buffer.getvalue())


def load_results(path: str | Path) -> list[CaseResult]:
    """Read a file written by ``save_results``; a malformed file gives one error naming it."""
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
        return [
            CaseResult(
                row["scheme"],
                int(row["fold"]),
                row["joint"],
                row["case"],
                row["bone"],
                {key: float(row[key]) for key in METRIC_KEYS},
            )
            for row in rows
        ]
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a per-case results file ({error!r})") from error
