"""k-fold cross-validation by subject: every case of a dataset is in exactly one test fold, and all
cases of one subject (e.g. both knees of a child) fall in the same fold. Deterministic from a seed."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from PediatricBoneSegLib.atomic import write_text


@dataclass(frozen=True)
class Fold:
    """One fold: per joint, the case ids to train on and the case ids to test on."""

    index: int
    train: dict[str, tuple[str, ...]]
    test: dict[str, tuple[str, ...]]


def subject_of(case_id: str, pattern: str | None = None) -> str:
    """The subject of a case: the first group of ``pattern`` (a regular expression matched at the
    start of the case id), or the case id itself when no pattern is given."""
    if pattern is None:
        return case_id
    match = re.match(pattern, case_id)
    if match is None or not match.groups():
        raise ValueError(f"case id {case_id!r} does not match the subject pattern {pattern!r} (with one group)")
    return match.group(1)


def split_subjects(case_ids: Sequence[str], k: int, seed: int, pattern: str | None = None) -> list[tuple[str, ...]]:
    """The test cases of each of the ``k`` folds (sorted): subjects shuffled by ``seed`` then dealt
    round-robin, so fold sizes differ by at most one subject."""
    if len(set(case_ids)) != len(case_ids):
        raise ValueError("duplicate case ids")
    subjects: dict[str, list[str]] = {}
    for case in sorted(case_ids):
        subjects.setdefault(subject_of(case, pattern), []).append(case)
    if k < 2 or len(subjects) < k:
        raise ValueError(f"{k}-fold cross-validation needs k >= 2 and at least k subjects, got {len(subjects)}")
    order = sorted(subjects)
    permutation = np.random.default_rng(seed).permutation(len(order))
    folds: list[list[str]] = [[] for _ in range(k)]
    for position, index in enumerate(permutation):
        folds[position % k] += subjects[order[index]]
    return [tuple(sorted(fold)) for fold in folds]


def make_folds(
    cases_by_joint: Mapping[str, Sequence[str]], k: int, seed: int, pattern: str | None = None
) -> list[Fold]:
    """Folds over several datasets: each joint's subjects are split independently (a seed per
    joint derived from ``seed``), fold i tests on the i-th part of every joint."""
    parts = {
        joint: split_subjects(cases, k, seed * 1000 + position, pattern)
        for position, (joint, cases) in enumerate(cases_by_joint.items())
    }
    return [
        Fold(
            index,
            train={joint: tuple(sorted(set(cases_by_joint[joint]) - set(parts[joint][index]))) for joint in parts},
            test={joint: parts[joint][index] for joint in parts},
        )
        for index in range(k)
    ]


def save_folds(path: str | Path, folds: Sequence[Fold]) -> None:
    """Write the folds as JSON (like nnU-Net's ``splits_final.json``), atomically."""
    write_text(path, json.dumps([{"fold": f.index, "train": f.train, "test": f.test} for f in folds], indent=1))


def load_folds(path: str | Path) -> list[Fold]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return [
            Fold(
                int(entry["fold"]),
                {j: tuple(c) for j, c in entry["train"].items()},
                {j: tuple(c) for j, c in entry["test"].items()},
            )
            for entry in raw
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a folds file ({error})") from error
