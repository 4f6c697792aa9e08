"""The experiment report: results table (Markdown + CSV, mean ± std per scheme × joint × bone ×
metric), Wilcoxon tests, box plots and a 2D projection of the embeddings colored by domain (PNG).

Figures are drawn with matplotlib's object API on an Agg canvas: no pyplot, no global backend."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from PediatricBoneSegLib.atomic import atomic_file, write_text
from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint

from .config import SCHEMES
from .metrics import METRICS, get_metric
from .results import CaseResult, save_results
from .statistics import ALL_JOINTS, Comparison

ALL_BONES = "all"
SCHEME_TITLES = {
    "individual": "Individual",
    "transfer": "Transfer",
    "shared": "Shared",
    "mtmd": "MTMD",
    "mtmd_contrastive": "MTMD + contrastive",
    "full": "MTMD + contrastive + priors",
}


@dataclass(frozen=True)
class Summary:
    """mean ± std (sample std) over the finite values, in the metric's display unit; ``undefined``
    counts the values left out (infinite distance of a missed bone, undefined sensitivity)."""

    scheme: str
    joint: str
    bone: str
    metric: str
    mean: float
    std: float
    n: int
    undefined: int


def _ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + [v for v in present if v not in order]


def summarize(results: Sequence[CaseResult]) -> list[Summary]:
    """Per scheme, joint, bone (catalog order, then ``"all"`` pooling the joint's bones) and metric."""
    rows = []
    for scheme in _ordered([r.scheme for r in results], SCHEMES):
        for joint in _ordered([r.joint for r in results], JOINT_KEYS):
            selected = [r for r in results if r.scheme == scheme and r.joint == joint]
            if not selected:
                continue
            bones = _ordered([r.bone for r in selected], [b.key for b in get_joint(joint).bones])
            for bone in [*bones, ALL_BONES]:
                chosen = [r for r in selected if bone in (ALL_BONES, r.bone)]
                for metric in METRICS:
                    values = np.array([r.metrics[metric.key] for r in chosen], dtype=float) * metric.scale
                    finite = values[np.isfinite(values)]
                    mean = float(finite.mean()) if len(finite) else float("nan")
                    std = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0 if len(finite) else float("nan")
                    rows.append(
                        Summary(scheme, joint, bone, metric.key, mean, std, len(values), len(values) - len(finite))
                    )
    return rows


def summary_csv(summaries: Sequence[Summary]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("scheme", "joint", "bone", "metric", "unit", "mean", "std", "n", "undefined"))
    for s in summaries:
        writer.writerow(
            (
                s.scheme,
                s.joint,
                s.bone,
                s.metric,
                get_metric(s.metric).unit,
                f"{s.mean:.6g}",
                f"{s.std:.6g}",
                s.n,
                s.undefined,
            )
        )
    return buffer.getvalue()


def _cell(summary: Summary, star: bool) -> str:
    if summary.n == summary.undefined:
        return "n/a"
    digits = 2 if get_metric(summary.metric).unit == "mm" else 1
    text = f"{summary.mean:.{digits}f} ± {summary.std:.{digits}f}" + ("*" if star else "")
    return text + (f" ({summary.undefined} undef.)" if summary.undefined else "")


def results_markdown(
    summaries: Sequence[Summary], comparisons: Sequence[Comparison], title: str = "Results", alpha: float = 0.05
) -> str:
    """Tables per joint (rows: bone × scheme) and the list of Wilcoxon tests."""
    significant = {(c.baseline, c.joint, c.metric) for c in comparisons if c.significant(alpha)}
    by_key = {(s.scheme, s.joint, s.bone, s.metric): s for s in summaries}
    header = "| Bone | Scheme | " + " | ".join(f"{m.title} ({m.unit})" for m in METRICS) + " |"
    lines = [f"# {title}", ""]
    if comparisons:
        lines += [
            f"mean ± std over test cases of all folds; `*` on a joint's `all bones` row: differs from "
            f"`{comparisons[0].reference}` (Wilcoxon signed-rank, paired per case and bone over the joint's "
            f"bones, p < {alpha}); single bones are not tested (too few test cases per bone).",
            "",
        ]
    for joint in _ordered([s.joint for s in summaries], JOINT_KEYS):
        lines += [f"## {get_joint(joint).display_name}", "", header, "|" + " --- |" * (len(METRICS) + 2)]
        schemes = _ordered([s.scheme for s in summaries if s.joint == joint], SCHEMES)
        bones = _ordered([s.bone for s in summaries if s.joint == joint], [b.key for b in get_joint(joint).bones])
        for bone in bones:
            name = "all bones" if bone == ALL_BONES else bone
            for scheme in schemes:
                tested = bone == ALL_BONES  # the Wilcoxon test pools the joint's bones
                cells = [
                    _cell(by_key[scheme, joint, bone, m.key], tested and (scheme, joint, m.key) in significant)
                    for m in METRICS
                    if (scheme, joint, bone, m.key) in by_key
                ]
                lines.append(f"| {name} | {SCHEME_TITLES.get(scheme, scheme)} | " + " | ".join(cells) + " |")
        lines.append("")
    if comparisons:
        lines += [
            "## Wilcoxon signed-rank tests",
            "",
            "| Baseline | Joint | Metric | Pairs | Dropped | Median difference | p |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in comparisons:
            metric = get_metric(c.metric)
            lines.append(
                f"| {SCHEME_TITLES.get(c.baseline, c.baseline)} | {c.joint} | {metric.title} | {c.pairs} | "
                f"{c.dropped} | {c.median_difference * metric.scale:+.3g} {metric.unit} | {c.p_value:.3g} |"
            )
        lines.append("")
    return "\n".join(lines)


def conditions_markdown(
    results: Mapping[str, Sequence[CaseResult]],
    comparisons: Mapping[str, Sequence[Comparison]],
    titles: Mapping[str, str],
    title: str = "Results by test condition",
) -> str:
    """One table per test condition side by side: mean ± std Dice per scheme over every joint's
    bones and test cases, per joint, and the reference scheme against each (Wilcoxon over all
    joints: median paired difference, p)."""
    conditions = list(results)
    dice = get_metric("dice")
    schemes = _ordered([r.scheme for chosen in results.values() for r in chosen], SCHEMES)
    joints = _ordered([r.joint for chosen in results.values() for r in chosen], JOINT_KEYS)

    def cell(chosen: Sequence[CaseResult]) -> str:
        values = np.array([r.metrics["dice"] for r in chosen], dtype=float) * dice.scale
        return f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.1f}" if len(values) else "n/a"

    tests = {
        (condition, c.baseline): c
        for condition in conditions
        for c in comparisons.get(condition, ())
        if c.metric == "dice" and c.joint == ALL_JOINTS
    }
    reference = next((c.reference for chosen in comparisons.values() for c in chosen), None)
    lines = [f"# {title}", "", "Dice (%), mean ± std over the bones of every test case of all folds.", ""]
    lines += ["| Scheme | " + " | ".join(titles[c] for c in conditions) + " |", "| --- |" + " --- |" * len(conditions)]
    for scheme in schemes:
        cells = [cell([r for r in results[c] if r.scheme == scheme]) for c in conditions]
        lines.append(f"| {SCHEME_TITLES.get(scheme, scheme)} | " + " | ".join(cells) + " |")
    for joint in joints:
        lines += ["", f"## {get_joint(joint).display_name}", ""]
        lines += ["| Scheme | " + " | ".join(titles[c] for c in conditions) + " |"]
        lines += ["| --- |" + " --- |" * len(conditions)]
        for scheme in schemes:
            cells = [cell([r for r in results[c] if r.scheme == scheme and r.joint == joint]) for c in conditions]
            lines.append(f"| {SCHEME_TITLES.get(scheme, scheme)} | " + " | ".join(cells) + " |")
    if reference is not None:
        lines += ["", f"## {SCHEME_TITLES.get(reference, reference)} against each scheme, all joints", ""]
        lines += ["Median paired Dice difference (points, reference minus scheme) and two-sided p.", ""]
        lines += [
            "| Scheme | " + " | ".join(titles[c] for c in conditions) + " |",
            "| --- |" + " --- |" * len(conditions),
        ]
        for scheme in schemes:
            if scheme == reference:
                continue
            found = [tests.get((c, scheme)) for c in conditions]
            cells = [
                "n/a" if t is None else f"{t.median_difference * dice.scale:+.1f}, p = {t.p_value:.2g} (n = {t.pairs})"
                for t in found
            ]
            lines.append(f"| {SCHEME_TITLES.get(scheme, scheme)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _save_figure(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    with atomic_file(path) as temporary:
        figure.savefig(temporary, dpi=110)
    return path


def plot_boxplots(results: Sequence[CaseResult], joint: str, path: str | Path) -> Path:
    """One panel per metric; one box per scheme over the joint's bones and test cases (finite values)."""
    selected = [r for r in results if r.joint == joint]
    schemes = _ordered([r.scheme for r in selected], SCHEMES)
    figure = Figure(figsize=(3.2 * 3, 3.0 * 2), layout="constrained")
    for index, metric in enumerate(METRICS):
        axes = figure.add_subplot(2, 3, index + 1)
        data = []
        for scheme in schemes:
            values = np.array([r.metrics[metric.key] for r in selected if r.scheme == scheme]) * metric.scale
            data.append(values[np.isfinite(values)])
        axes.boxplot(data)
        axes.set_xticks(range(1, len(schemes) + 1), [SCHEME_TITLES.get(s, s).replace(" + ", "\n+ ") for s in schemes])
        axes.set_title(f"{metric.title} ({metric.unit})")
        axes.tick_params(axis="x", labelsize=6, rotation=90)
    figure.suptitle(f"{get_joint(joint).display_name}: per-bone results on the test folds")
    return _save_figure(figure, Path(path))


def project_2d(points: np.ndarray) -> np.ndarray:
    """PCA of [N, D] points onto their two principal axes: [N, 2] (zeros where N < 2)."""
    centered = np.asarray(points, dtype=float) - np.mean(points, axis=0)
    if len(centered) < 2:
        return np.zeros((len(centered), 2))
    _, _, axes = np.linalg.svd(centered, full_matrices=False)
    projected = centered @ axes[:2].T
    return np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))


def plot_embeddings(panels: Mapping[str, tuple[np.ndarray, Sequence[str]]], path: str | Path) -> Path:
    """One panel per title: embeddings [N, D] projected by PCA, colored by domain (joint)."""
    figure = Figure(figsize=(3.6 * max(1, len(panels)), 3.6), layout="constrained")
    colors = {joint: f"C{index}" for index, joint in enumerate(JOINT_KEYS)}
    for index, (title, (points, domains)) in enumerate(panels.items()):
        axes = figure.add_subplot(1, max(1, len(panels)), index + 1)
        projected = project_2d(points)
        for joint in _ordered(list(domains), JOINT_KEYS):
            chosen = np.array([d == joint for d in domains])
            axes.scatter(*projected[chosen].T, s=10, color=colors.get(joint, "k"), label=joint)
        axes.set_title(SCHEME_TITLES.get(title, title), fontsize=9)
        axes.set_xlabel("PC 1")
        axes.set_ylabel("PC 2")
        axes.legend(fontsize=7)
    return _save_figure(figure, Path(path))


def write_report(
    out_dir: str | Path,
    results: Sequence[CaseResult],
    comparisons: Sequence[Comparison],
    embeddings: Mapping[str, tuple[np.ndarray, Sequence[str]]] | None = None,
    title: str = "Results",
) -> list[Path]:
    """Write every report file into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    summaries = summarize(results)
    written = [
        save_results(out_dir / "results_cases.csv", results),
        write_text(out_dir / "results.csv", summary_csv(summaries)),
        write_text(out_dir / "results.md", results_markdown(summaries, comparisons, title)),
    ]
    if comparisons:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            (
                "reference",
                "baseline",
                "joint",
                "metric",
                "pairs",
                "dropped",
                "statistic",
                "p_value",
                "median_difference",
            )
        )
        for c in comparisons:
            statistic = "" if math.isnan(c.statistic) else f"{c.statistic:.6g}"
            writer.writerow(
                (
                    c.reference,
                    c.baseline,
                    c.joint,
                    c.metric,
                    c.pairs,
                    c.dropped,
                    statistic,
                    f"{c.p_value:.6g}",
                    f"{c.median_difference:.6g}",
                )
            )
        written.append(write_text(out_dir / "statistics.csv", buffer.getvalue()))
    for joint in _ordered([r.joint for r in results], JOINT_KEYS):
        written.append(plot_boxplots(results, joint, out_dir / f"boxplots_{joint}.png"))
    if embeddings:
        written.append(plot_embeddings(embeddings, out_dir / "embeddings.png"))
    return written
