"""The scheme-comparison experiment of the paper: for each scheme and each cross-validation fold,
train on the fold's training subjects, segment its test subjects in 3D with the inference
pipeline the CLI and Slicer use, measure per bone in mm, then test and report.

``python -m pbseg_training.experiment [CONFIG] -o OUTDIR [--smoke] [--jobs N] [--report-only]``.
Running the same command again continues an interrupted experiment: finished runs are reused, an
unfinished one resumes from its checkpoint. ``--jobs N`` trains N runs at once in worker
processes (one per core, or per group of ``training.threads`` cores). Runs are planned fold by
fold, so an experiment stopped half way has whole folds of every scheme; ``--report-only``
writes the report of the folds finished so far (every scheme tested on the same cases) and names
the runs still missing.

Layout of OUTDIR: ``data/`` (generated phantoms), ``folds.json``,
``runs/<scheme>/fold<k>[-<joint>]/`` (model, checkpoint, TensorBoard logs, ``history.json``,
``training_config.json``, ``embeddings.npz`` for the fold-0 multi-joint runs, ``timings.json``
(training and evaluation time, s) and ``evaluation.csv``, written last: a run with it is
finished) and ``report/`` (results.md, results.csv, results_cases.csv, statistics.csv, box plots,
embeddings.png, experiment.json with every finished run's timings and the mean training time per
scheme).
A finished run's report inputs are its small text and ``.npz`` files: its model and checkpoint
may be deleted (or left out of version control) without losing anything the report needs.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from tqdm import tqdm

from pbseg_training.dataset import RawDataset, validate_dataset
from PediatricBoneSegLib.atomic import atomic_file, write_text
from PediatricBoneSegLib.network.modelfile import load_model, read_manifest
from PediatricBoneSegLib.options import SegmentOptions
from PediatricBoneSegLib.pipeline.embedding import detection_slice_indices
from PediatricBoneSegLib.pipeline.inference import segment_image
from PediatricBoneSegLib.signals import exit_code, interrupts_as_exceptions

from .config import DatasetSpec, TrainingConfig, config_from_dict
from .crossval import Fold, make_folds, save_folds
from .data import load_domain
from .experiment_config import ExperimentConfig, load_experiment_config, with_overrides
from .metrics import image_metrics
from .report import conditions_markdown, write_report
from .results import CaseResult, load_results, save_results
from .shift import (
    CONDITION_TITLES,
    CONDITIONS,
    SPLIT_TITLES,
    SUBJECT_PATTERN,
    UNSEEN_PROTOCOL,
    ShiftSpec,
    parse_case,
    training_cases,
    write_shift_dataset,
)
from .statistics import ALL_JOINTS, compare_schemes
from .trainer import CHECKPOINT_NAME, MODEL_NAME, train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PER_JOINT_SCHEMES = ("individual", "transfer")  # one network per target joint
EVALUATION_NAME = "evaluation.csv"
EMBEDDINGS_NAME = "embeddings.npz"
TIMINGS_NAME = "timings.json"


@dataclass(frozen=True)
class Run:
    """One training of the experiment; ``evaluated``: the joints its model is tested on."""

    scheme: str
    fold: Fold
    target: str | None
    trained: tuple[str, ...]
    evaluated: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.scheme}/fold{self.fold.index}" + (f"-{self.target}" if self.target else "")


def prepare_datasets(config: ExperimentConfig, out_dir: Path) -> dict[str, Path]:
    """Raw-layout folder per joint: the configured ones, or phantoms generated on first use (the
    phantom writer is atomic: an interruption leaves no half dataset)."""
    if config.phantoms is None:
        return {joint: Path(config.base, path) for joint, path in config.datasets}
    from pbseg_training.phantoms import write_phantom_dataset

    spec, folders = config.phantoms, {}
    for index, joint in enumerate(spec.joints):
        folders[joint] = out_dir / "data" / joint
        if folders[joint].exists():
            continue
        if config.shift is not None:
            write_shift_dataset(
                joint, spec.cases, spec.seed + 100 * index, folders[joint], config.shift, spec.voxel_scale
            )
        else:
            write_phantom_dataset(
                joint,
                spec.cases,
                spec.seed + 100 * index,
                folders[joint],
                voxel_scale=spec.voxel_scale,
                version=spec.generator_version,
            )
    return folders


def plan_runs(config: ExperimentConfig, joints: Sequence[str], folds: Sequence[Fold]) -> list[Run]:
    """Every training of the experiment, fold by fold (every scheme of fold 0 first)."""
    runs = []
    for fold in folds:
        for scheme in config.schemes:
            if scheme in PER_JOINT_SCHEMES:
                for joint in joints:
                    trained = (joint,) if scheme == "individual" else tuple(joints)
                    runs.append(Run(scheme, fold, joint, trained, (joint,)))
            else:
                runs.append(Run(scheme, fold, None, tuple(joints), tuple(joints)))
    return runs


def training_config(config: ExperimentConfig, run: Run, datasets: dict[str, Path]) -> TrainingConfig:
    raw = {
        **config.training,
        "name": run.name.replace("/", "-"),
        "scheme": run.scheme,
        "seed": config.seed + run.fold.index,
        "target_joint": run.target,
        "datasets": [
            {"path": str(datasets[joint]), "joint": joint, "cases": list(_trained_cases(config, run.fold.train[joint]))}
            for joint in run.trained
        ],
    }
    return config_from_dict(raw, base=Path(config.base))


def _trained_cases(config: ExperimentConfig, cases: tuple[str, ...]) -> tuple[str, ...]:
    """A fold's training cases that a run trains on: under shift, only the site's own images."""
    return cases if config.shift is None else training_cases(cases)


def evaluate(model_path: Path, run: Run, datasets: dict[str, Path], postprocess: bool) -> list[CaseResult]:
    """Segment every test case of the run's evaluated joints and measure each bone."""
    loaded = load_model(model_path)
    results = []
    for joint in run.evaluated:
        cases = {case.case_id: case for case in RawDataset(datasets[joint]).cases}
        for case_id in run.fold.test[joint]:
            case = cases[case_id]
            image = sitk.ReadImage(str(case.image_path), sitk.sitkFloat32)
            truth = sitk.ReadImage(str(case.label_path))
            output = segment_image(image, SegmentOptions(joint=joint, postprocess=postprocess), model=loaded)
            truth = sitk.Cast(truth, output.labels.GetPixelID())
            for bone, values in image_metrics(output.labels, truth, joint).items():
                results.append(CaseResult(run.scheme, run.fold.index, joint, case_id, bone, values))
    return results


def slice_embeddings(model_path: Path, datasets: dict[str, Path]) -> tuple[np.ndarray, list[str]]:
    """[N, D] embeddings of the detection slices of every case of every joint the model knows,
    each under its domain's BN, from the contrastive projection head of the deepest encoder stage
    (the space the contrastive loss shapes); and the joint of each row."""
    loaded = load_model(model_path)
    network = loaded.network.eval()
    scale = "enc5" if "enc5" in network.projections else next(iter(network.projections))
    rows, domains = [], []
    for joint in loaded.manifest.joints:
        pool = load_domain(DatasetSpec(str(datasets[joint]), joint), loaded.manifest.preprocessing)
        for case in range(len(pool.case_ids)):
            images = pool.images[pool.case_index == case]
            images = images[torch.from_numpy(detection_slice_indices(len(images)))]
            with torch.inference_mode():
                embedded = network(images, loaded.domain_of(joint), with_embeddings=True).embeddings[scale]
            rows.append(embedded.float().numpy())
            domains += [joint] * len(embedded)
    return np.concatenate(rows), domains


def _portable(training: TrainingConfig, out_dir: Path) -> dict:
    """The configuration as JSON with its file paths relative to the experiment folder, so that a
    finished experiment folder can be moved (or committed) and still be continued."""
    saved = json.loads(json.dumps(asdict(training)))
    for dataset in saved["datasets"]:
        dataset["path"] = os.path.relpath(dataset["path"], out_dir)
    if saved["imagenet_weights"]:
        saved["imagenet_weights"] = os.path.relpath(saved["imagenet_weights"], out_dir)
    return saved


def _same_config(run_dir: Path, training: TrainingConfig, out_dir: Path) -> None:
    """A run folder belongs to one configuration: refuse to mix results of another."""
    wanted = _portable(training, out_dir)
    saved = run_dir / "training_config.json"
    if saved.exists():
        if json.loads(saved.read_text(encoding="utf-8")) != wanted:
            raise ValueError(f"{run_dir} holds a run of another configuration: use a new output folder")
    else:
        write_text(saved, json.dumps(wanted, indent=1))


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | Path,
    show_progress: bool = True,
    jobs: int = 1,
    report_only: bool = False,
) -> Path:
    """Run (or continue) the whole experiment; returns the report folder. ``jobs``: runs trained
    at once, each in its own process. ``training.threads``, when set, is each run's thread count
    (default: the cores divided among the jobs) and applies to evaluation too; torch's thread
    count is restored on return. ``report_only``: train nothing, report the finished runs."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    threads = torch.get_num_threads()
    run_threads = int(config.training.get("threads") or 0) or max(1, (os.cpu_count() or 1) // jobs)
    try:
        torch.set_num_threads(run_threads)
        return _run(config, Path(out_dir).resolve(), show_progress, jobs, run_threads, report_only)
    finally:
        torch.set_num_threads(threads)


def _check_datasets(datasets: dict[str, Path]) -> None:
    """Every problem of every dataset at once, before hours of training start."""
    listing = [
        f"  {problem.path}: {problem.message}" for folder in datasets.values() for problem in validate_dataset(folder)
    ]
    if listing:
        raise ValueError(f"{len(listing)} dataset problem(s):\n" + "\n".join(listing))


@dataclass(frozen=True)
class _Task:
    """What a worker process needs to train, evaluate and embed one run."""

    run: Run
    run_dir: Path
    training: TrainingConfig
    datasets: dict[str, Path]
    postprocess: bool
    with_embeddings: bool
    threads: int


def _train_and_evaluate(task: _Task) -> str:
    """Train the run (resuming its checkpoint), then save its embeddings, timings and evaluation;
    the evaluation file is written last and marks the run finished. Returns the run's name."""
    torch.set_num_threads(task.threads)
    model_path = task.run_dir / MODEL_NAME
    if not model_path.exists():
        train(task.training, task.run_dir, resume=(task.run_dir / CHECKPOINT_NAME).exists(), show_progress=False)
    clock = time.monotonic()
    if task.with_embeddings:
        points, domains = slice_embeddings(model_path, task.datasets)
        with atomic_file(task.run_dir / EMBEDDINGS_NAME) as temporary, open(temporary, "wb") as stream:
            np.savez(stream, points=points, domains=np.array(domains))
    results = evaluate(model_path, task.run, task.datasets, task.postprocess)
    timings = {
        # the model file's training time covers every session of a resumed training
        "train_s": read_manifest(model_path)["provenance"]["training_seconds"],
        "evaluate_s": round(time.monotonic() - clock, 1),
        "threads": task.threads,
    }
    write_text(task.run_dir / TIMINGS_NAME, json.dumps(timings))
    save_results(task.run_dir / EVALUATION_NAME, results)
    return task.run.name


def _mean_training_minutes(timings: dict[str, dict[str, float]], runs: Sequence[Run]) -> dict[str, float]:
    """Mean training time per scheme (min) over the runs with recorded timings."""
    by_scheme: dict[str, list[float]] = {}
    for run in runs:
        if run.name in timings:
            by_scheme.setdefault(run.scheme, []).append(timings[run.name]["train_s"] / 60)
    return {scheme: round(float(np.mean(minutes)), 1) for scheme, minutes in by_scheme.items()}


def _core_hours(timings: dict[str, dict[str, float]], runs: Sequence[Run]) -> dict[str, float]:
    """Core-hours per scheme, all its runs' training and evaluation (time x threads)."""
    by_scheme: dict[str, float] = {}
    for run in runs:
        if run.name in timings:
            spent = timings[run.name]["train_s"] + timings[run.name]["evaluate_s"]
            by_scheme[run.scheme] = by_scheme.get(run.scheme, 0.0) + spent * timings[run.name]["threads"] / 3600
    return {scheme: round(hours, 2) for scheme, hours in by_scheme.items()}


def _write_condition_reports(
    report_dir: Path, results: list[CaseResult], reference: str, title: str, shift: ShiftSpec
) -> None:
    """The report of each test condition alone (``report/<condition>/``), each with its own
    paired tests; ``conditions.md``, the conditions side by side, the unseen protocols also split
    by whether another joint's site used them; and ``by_protocol.csv``: mean Dice per scheme,
    joint (and "all": every joint pooled), condition and protocol."""
    by_condition: dict[str, list[CaseResult]] = {}
    for result in results:
        by_condition.setdefault(parse_case(result.case)[1], []).append(result)
    by_condition = {condition: by_condition[condition] for condition in CONDITIONS if condition in by_condition}
    comparisons = {condition: compare_schemes(chosen, reference) for condition, chosen in by_condition.items()}
    for condition, chosen in by_condition.items():
        subtitle = f"{title}; {CONDITION_TITLES[condition]}"
        write_report(report_dir / condition, chosen, comparisons[condition], title=subtitle)
    columns, titles = dict(by_condition), {**CONDITION_TITLES, **SPLIT_TITLES}
    for result in by_condition.get(UNSEEN_PROTOCOL, []):
        columns.setdefault(shift.protocol_split(result.joint, parse_case(result.case)[2]), []).append(result)
    columns = {key: columns[key] for key in titles if key in columns}
    for key in SPLIT_TITLES:
        if key in columns:
            comparisons[key] = compare_schemes(columns[key], reference)
    text = conditions_markdown(columns, comparisons, titles, title=f"{title}: by test condition")
    write_text(report_dir / "conditions.md", text)
    dice: dict[tuple[str, str, str, str], list[float]] = {}
    for result in results:
        _, condition, family = parse_case(result.case)
        for joint in (result.joint, ALL_JOINTS):  # each joint, and every joint pooled
            dice.setdefault((result.scheme, joint, condition, family), []).append(result.metrics["dice"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("scheme", "joint", "condition", "protocol", "bones", "mean_dice"))
    writer.writerows((*key, len(values), f"{np.mean(values):.4f}") for key, values in sorted(dice.items()))
    write_text(report_dir / "by_protocol.csv", buffer.getvalue())


def _load_embeddings(path: Path) -> tuple[np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as saved:
        return saved["points"], [str(domain) for domain in saved["domains"]]


def _finished_runs(tasks: list[_Task], jobs: int) -> Iterator[str]:
    """Run the tasks, ``jobs`` at a time in spawned worker processes (in this process when
    ``jobs`` is 1), yielding each run's name as it finishes; a failed or interrupted
    run stops the others at once (each resumes from its last checkpoint next time)."""
    if jobs == 1 or len(tasks) <= 1:
        yield from map(_train_and_evaluate, tasks)
        return
    # spawn, not fork: a forked child would inherit this process's OpenMP and VTK thread state
    pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(tasks)))
    try:
        yield from pool.imap_unordered(_train_and_evaluate, tasks)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _run(
    config: ExperimentConfig, out_dir: Path, show_progress: bool, jobs: int, threads: int, report_only: bool
) -> Path:
    started = time.monotonic()
    datasets = prepare_datasets(config, out_dir)
    _check_datasets(datasets)
    cases = {joint: [case.case_id for case in RawDataset(folder).cases] for joint, folder in datasets.items()}
    pattern = SUBJECT_PATTERN if config.shift is not None else config.subject_pattern
    folds = make_folds(cases, config.folds, config.seed, pattern)
    save_folds(out_dir / "folds.json", folds)
    runs = plan_runs(config, list(datasets), folds)
    tasks = []
    for run in runs:
        run_dir = out_dir / "runs" / run.name
        training = training_config(config, run, datasets)
        run_dir.mkdir(parents=True, exist_ok=True)
        _same_config(run_dir, training, out_dir)
        if not (run_dir / EVALUATION_NAME).exists():
            with_embeddings = run.fold.index == 0 and run.scheme not in PER_JOINT_SCHEMES and len(datasets) > 1
            tasks.append(_Task(run, run_dir, training, datasets, config.postprocess, with_embeddings, threads))
    if not report_only:
        with tqdm(total=len(tasks), desc=config.name, disable=not show_progress, dynamic_ncols=True) as bar:
            for name in _finished_runs(tasks, jobs):
                bar.set_postfix_str(name)
                bar.update()
    unfinished = tasks if report_only else []
    missing = {task.run.name for task in unfinished}
    complete = {fold.index for fold in folds} - {task.run.fold.index for task in unfinished}
    if not complete:
        raise ValueError(f"{out_dir}: no fold is complete yet: {len(runs) - len(missing)} of {len(runs)} runs finished")
    results: list[CaseResult] = []
    embeddings = {}
    timings = {}  # of every finished run that recorded them, across all sessions of the experiment
    for run in runs:
        run_dir = out_dir / "runs" / run.name
        if run.fold.index in complete:
            results += load_results(run_dir / EVALUATION_NAME)
            if (run_dir / EMBEDDINGS_NAME).exists():
                embeddings[run.scheme] = _load_embeddings(run_dir / EMBEDDINGS_NAME)
        if (run_dir / TIMINGS_NAME).exists() and run.name not in missing:
            timings[run.name] = json.loads((run_dir / TIMINGS_NAME).read_text(encoding="utf-8"))
    report_dir = out_dir / "report"
    comparisons = compare_schemes(results, config.reference)
    subjects = ", ".join(f"{joint} {len(ids)}" for joint, ids in cases.items())
    title = f"{config.name}: {config.folds}-fold cross-validation by subject (cases: {subjects})"
    if missing:
        title += (
            f"; partial: {len(complete)} of {len(folds)} folds complete (reported), "
            f"{len(runs) - len(missing)} of {len(runs)} runs finished"
        )
    write_report(report_dir, results, comparisons, embeddings, title=title)
    if config.shift is not None:
        _write_condition_reports(report_dir, results, config.reference, title, config.shift)
    summary = {
        "config": {**asdict(config)},
        "datasets": {joint: os.path.relpath(path, out_dir) for joint, path in datasets.items()},
        "runs": [run.name for run in runs],
        "missing_runs": sorted(missing),
        "reported_folds": sorted(complete),
        "timings_s": timings,
        "training_minutes_by_scheme": _mean_training_minutes(timings, runs),
        "core_hours_by_scheme": _core_hours(timings, runs),
        "total_s": round(time.monotonic() - started, 1),
        "torch": torch.__version__,
        "jobs": jobs,
        "threads_per_run": threads,
    }
    write_text(report_dir / "experiment.json", json.dumps(summary, indent=1, default=str))
    return report_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pbseg_training.experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "config",
        nargs="?",
        type=Path,
        help="experiment configuration (TOML); default: "
        "training/configs/experiment_full.toml, or experiment_smoke.toml with --smoke",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="experiment folder")
    parser.add_argument("--smoke", action="store_true", help="the tiny smoke-test size (about a minute on 2 cores)")
    parser.add_argument("--steps", type=int, help="override the training steps of every run (a shorter experiment)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument(
        "--report-only", action="store_true", help="train nothing: write the report of the folds finished so far"
    )
    args = parser.parse_args(argv)
    if args.config and args.smoke:
        parser.error("give a configuration or --smoke, not both")
    path = args.config or CONFIGS / ("experiment_smoke.toml" if args.smoke else "experiment_full.toml")
    try:
        config = load_experiment_config(path)
        if args.steps:
            config = with_overrides(config, steps=args.steps)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        with interrupts_as_exceptions():  # a batch system's SIGTERM must stop the worker processes too
            report = run_experiment(config, args.output, jobs=args.jobs, report_only=args.report_only)
    except ValueError as error:  # bad datasets, or a folder holding another configuration's runs
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interruption:
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return exit_code(interruption)
    print(f"report written to {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
