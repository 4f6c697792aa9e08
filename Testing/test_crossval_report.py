"""Cross-validation splits, paired Wilcoxon statistics and the report files, on synthetic numbers."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from matplotlib.image import imread
from scipy import stats

from pbseg_training.crossval import load_folds, make_folds, save_folds, split_subjects, subject_of
from pbseg_training.metrics import METRIC_KEYS
from pbseg_training.report import ALL_BONES, project_2d, results_markdown, summarize, write_report
from pbseg_training.results import CaseResult, load_results, save_results
from pbseg_training.statistics import compare_schemes, wilcoxon_test
from PediatricBoneSegLib.catalog import get_joint

# ------------------------------------------------------------------ cross-validation


def test_every_case_is_in_exactly_one_test_fold_and_subjects_stay_together() -> None:
    cases = [f"knee_{subject:03d}_{side}" for subject in range(7) for side in ("left", "right")]
    folds = split_subjects(cases, 3, seed=5, pattern=r"(knee_\d+)_")
    assert sorted(case for fold in folds for case in fold) == sorted(cases)
    for fold in folds:
        subjects = {subject_of(case, r"(knee_\d+)_") for case in fold}
        assert len(fold) == 2 * len(subjects)  # both sides of a subject in the same fold
    assert sorted(len(fold) for fold in folds) == [4, 4, 6]  # 7 subjects dealt over 3 folds
    assert split_subjects(cases, 3, seed=5, pattern=r"(knee_\d+)_") == folds
    assert split_subjects(cases, 3, seed=6, pattern=r"(knee_\d+)_") != folds
    assert split_subjects(list(reversed(cases)), 3, seed=5, pattern=r"(knee_\d+)_") == folds


def test_split_refuses_impossible_requests() -> None:
    with pytest.raises(ValueError, match="at least k subjects"):
        split_subjects(["a", "b"], 3, seed=0)
    with pytest.raises(ValueError, match="duplicate"):
        split_subjects(["a", "a", "b"], 2, seed=0)
    with pytest.raises(ValueError, match="subject pattern"):
        subject_of("ankle_1", r"knee_(\d+)")


def test_folds_over_joints_partition_train_and_test(tmp_path) -> None:
    cases = {"ankle": [f"a{i}" for i in range(5)], "knee": [f"k{i}" for i in range(4)], "shoulder": ["s0", "s1"]}
    folds = make_folds(cases, 2, seed=1)
    assert [fold.index for fold in folds] == [0, 1]
    for joint, ids in cases.items():
        tested = [case for fold in folds for case in fold.test[joint]]
        assert sorted(tested) == sorted(ids)
        for fold in folds:
            assert set(fold.train[joint]) | set(fold.test[joint]) == set(ids)
            assert not set(fold.train[joint]) & set(fold.test[joint])
    save_folds(tmp_path / "folds.json", folds)
    assert load_folds(tmp_path / "folds.json") == folds
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_folds(tmp_path / "bad.json")


# ------------------------------------------------------------------ synthetic results


def _results(seed: int = 0, cases: int = 6) -> list[CaseResult]:
    """Three schemes on ankle and knee; ``full`` is better than ``individual`` on every case and
    equal to ``mtmd`` up to a tiny symmetric jitter."""
    rng = np.random.default_rng(seed)
    rows = []
    for joint in ("ankle", "knee"):
        for case in range(cases):
            for bone in get_joint(joint).bones:
                base = {key: float(rng.uniform(0.5, 0.8)) for key in METRIC_KEYS}
                base["assd"], base["mssd"] = float(rng.uniform(1, 2)), float(rng.uniform(5, 9))
                for scheme, shift in (("individual", -0.1), ("mtmd", float(rng.normal(0, 1e-3))), ("full", 0.0)):
                    values = dict(base)
                    values["dice"] += shift
                    values["assd"] -= shift
                    rows.append(CaseResult(scheme, case % 2, joint, f"{joint}_{case}", bone.key, values))
    return rows


def test_wilcoxon_pairs_by_case_and_bone_and_matches_scipy() -> None:
    results = _results()
    comparison = wilcoxon_test(results, "full", "individual", "dice", joint="ankle")
    assert comparison.pairs == 6 * 3 and comparison.dropped == 0
    assert comparison.median_difference == pytest.approx(0.1)
    assert comparison.significant()
    ordered = sorted(results, key=lambda r: r.pair_key)
    full = [r.metrics["dice"] for r in ordered if r.scheme == "full" and r.joint == "ankle"]
    individual = [r.metrics["dice"] for r in ordered if r.scheme == "individual" and r.joint == "ankle"]
    assert comparison.p_value == pytest.approx(stats.wilcoxon(full, individual).pvalue)
    assert not wilcoxon_test(results, "full", "mtmd", "dice").significant()
    # identical schemes: no evidence, p = 1
    assert wilcoxon_test(results, "full", "full", "sensitivity").p_value == 1.0


def test_non_finite_pairs_are_dropped_and_counted() -> None:
    results = _results()
    missed = results.index(next(r for r in results if r.scheme == "individual" and r.joint == "knee"))
    values = dict(results[missed].metrics, assd=math.inf, mssd=math.inf)
    results[missed] = CaseResult(**{**results[missed].__dict__, "metrics": values})
    comparison = wilcoxon_test(results, "full", "individual", "assd", joint="knee")
    assert comparison.pairs == 6 * 4 - 1 and comparison.dropped == 1


def test_compare_schemes_covers_each_baseline_joint_and_metric() -> None:
    comparisons = compare_schemes(_results())
    keys = {(c.baseline, c.joint, c.metric) for c in comparisons}
    assert keys == {(b, j, m) for b in ("individual", "mtmd") for j in ("ankle", "knee", "all") for m in METRIC_KEYS}
    with pytest.raises(ValueError, match="reference"):
        compare_schemes([r for r in _results() if r.scheme != "full"])


# ------------------------------------------------------------------ report


def test_summary_means_are_in_display_units_and_pool_bones() -> None:
    results = _results()
    summaries = {(s.scheme, s.joint, s.bone, s.metric): s for s in summarize(results)}
    values = [r.metrics["dice"] * 100 for r in results if (r.scheme, r.joint, r.bone) == ("full", "knee", "patella")]
    summary = summaries["full", "knee", "patella", "dice"]
    assert summary.mean == pytest.approx(np.mean(values)) and summary.std == pytest.approx(np.std(values, ddof=1))
    pooled = summaries["full", "knee", ALL_BONES, "assd"]
    assert pooled.n == 6 * 4
    knee_full = [r.metrics["assd"] for r in results if (r.scheme, r.joint) == ("full", "knee")]
    assert pooled.mean == pytest.approx(np.mean(knee_full))


def test_markdown_marks_significant_baselines_only() -> None:
    results = _results()
    text = results_markdown(summarize(results), compare_schemes(results))
    lines = text.splitlines()
    individual_rows = [line for line in lines if line.startswith("| all bones | Individual |")]
    mtmd_rows = [line for line in lines if line.startswith("| all bones | MTMD |")]
    assert len(individual_rows) == 2 and len(mtmd_rows) == 2  # ankle and knee
    dice_cell = individual_rows[0].split("|")[3]
    assert dice_cell.strip().endswith("*")
    assert "*" not in mtmd_rows[0].split("|")[3]
    # The test pools the joint's bones: a single bone's row carries no mark.
    calcaneus_individual = next(line for line in lines if line.startswith("| calcaneus | Individual |"))
    assert "*" not in calcaneus_individual
    assert "## Knee" in text and "## Wilcoxon signed-rank tests" in text


def test_write_report_files(tmp_path) -> None:
    results = _results()
    rng = np.random.default_rng(1)
    embeddings = {
        scheme: (
            np.concatenate([rng.normal(c, 0.1, size=(5, 16)) for c in range(3)]),
            ["ankle"] * 5 + ["knee"] * 5 + ["shoulder"] * 5,
        )
        for scheme in ("mtmd", "full")
    }
    written = write_report(tmp_path, results, compare_schemes(results), embeddings, title="Synthetic")
    names = sorted(path.name for path in written)
    assert names == sorted(
        [
            "results_cases.csv",
            "results.csv",
            "results.md",
            "statistics.csv",
            "boxplots_ankle.png",
            "boxplots_knee.png",
            "embeddings.png",
        ]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary files left behind
    assert load_results(tmp_path / "results_cases.csv") == results
    with open(tmp_path / "results.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 3 * ((3 + 1) + (4 + 1)) * len(METRIC_KEYS)  # schemes × (bones + all) × metrics
    assert {row["unit"] for row in rows} == {"%", "mm"}
    image = imread(tmp_path / "embeddings.png")
    assert image.shape[0] > 100 and image.shape[1] >= 2 * image.shape[0]  # two panels side by side
    assert imread(tmp_path / "boxplots_knee.png").std() > 0.05  # something was drawn


def test_results_round_trip_keeps_infinities_and_names_bad_files(tmp_path) -> None:
    row = CaseResult(
        "full",
        0,
        "shoulder",
        "s1",
        "scapula",
        {**{key: 0.5 for key in METRIC_KEYS}, "assd": math.inf, "sensitivity": math.nan},
    )
    save_results(tmp_path / "cases.csv", [row])
    back = load_results(tmp_path / "cases.csv")[0]
    assert math.isinf(back.metrics["assd"]) and math.isnan(back.metrics["sensitivity"])
    (tmp_path / "broken.csv").write_text("scheme,fold\nfull,zero\n")
    with pytest.raises(ValueError, match=r"broken\.csv"):
        load_results(tmp_path / "broken.csv")


def test_pca_projection_separates_the_dominant_direction() -> None:
    rng = np.random.default_rng(2)
    points = rng.normal(0, 0.05, size=(40, 8))
    points[:20, 3] += 1.0  # two clusters along one axis
    projected = project_2d(points)
    assert projected.shape == (40, 2)
    first = projected[:, 0]
    assert (first[:20].mean() - first[20:].mean()) ** 2 > 0.8 and abs(first[:20].std()) < 0.2
    assert project_2d(points[:1]).shape == (1, 2)
