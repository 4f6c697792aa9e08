"""Paired statistics: Wilcoxon signed-rank test of the reference scheme (the full model) against
each other scheme, pairs being the same bone of the same test case."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .metrics import METRIC_KEYS
from .results import CaseResult

ALL_JOINTS = "all"


@dataclass(frozen=True)
class Comparison:
    """One test. ``pairs``: pairs with finite values in both schemes (``dropped``: the others, e.g.
    a bone missed entirely, whose surface distance is infinite); ``median_difference``: median of
    reference - baseline in the metric's stored unit; ``p_value`` two-sided (1.0 when every
    difference is zero or there is no pair)."""

    reference: str
    baseline: str
    joint: str
    metric: str
    pairs: int
    dropped: int
    statistic: float
    p_value: float
    median_difference: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def paired_values(
    results: Sequence[CaseResult], reference: str, baseline: str, metric: str, joint: str = ALL_JOINTS
) -> tuple[np.ndarray, np.ndarray, int]:
    """Values of ``metric`` for the pairs both schemes evaluated (sorted by pair key) and the
    number of pairs dropped for a non-finite value."""

    def table(scheme: str) -> dict[tuple, float]:
        return {
            r.pair_key: r.metrics[metric]
            for r in results
            if r.scheme == scheme and (joint == ALL_JOINTS or r.joint == joint)
        }

    ours, theirs = table(reference), table(baseline)
    common = sorted(set(ours) & set(theirs))
    finite = [key for key in common if math.isfinite(ours[key]) and math.isfinite(theirs[key])]
    return (
        np.array([ours[key] for key in finite], dtype=float),
        np.array([theirs[key] for key in finite], dtype=float),
        len(common) - len(finite),
    )


def wilcoxon_test(
    results: Sequence[CaseResult], reference: str, baseline: str, metric: str, joint: str = ALL_JOINTS
) -> Comparison:
    ours, theirs, dropped = paired_values(results, reference, baseline, metric, joint)
    difference = ours - theirs
    if not np.any(difference != 0):
        statistic, p_value = float("nan"), 1.0
    else:
        test = stats.wilcoxon(ours, theirs, zero_method="wilcox", alternative="two-sided")
        statistic, p_value = float(test.statistic), float(test.pvalue)
    median = float(np.median(difference)) if len(difference) else float("nan")
    return Comparison(reference, baseline, joint, metric, len(ours), dropped, statistic, p_value, median)


def compare_schemes(
    results: Sequence[CaseResult], reference: str = "full", metrics: Sequence[str] = METRIC_KEYS
) -> list[Comparison]:
    """The reference against every other scheme present, per joint and pooled over joints
    (``joint == "all"``), for each metric. p-values are not corrected for multiple testing."""
    schemes = list(dict.fromkeys(r.scheme for r in results))
    if reference not in schemes:
        raise ValueError(f"reference scheme {reference!r} has no results (schemes: {schemes})")
    joints = [*dict.fromkeys(r.joint for r in results), ALL_JOINTS]
    return [
        wilcoxon_test(results, reference, baseline, metric, joint)
        for baseline in schemes
        if baseline != reference
        for joint in joints
        for metric in metrics
    ]
