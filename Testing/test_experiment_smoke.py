"""The scheme-comparison experiment at its smoke size: six schemes, 2-fold cross-validation on
coarse phantoms, tiny trainings, 3D evaluation through the inference pipeline, report files."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbseg_training.crossval import load_folds
from pbseg_training.experiment import CONFIGS, main, plan_runs, run_experiment
from pbseg_training.experiment_config import load_experiment_config, with_overrides
from pbseg_training.metrics import METRIC_KEYS
from pbseg_training.results import load_results
from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint
from PediatricBoneSegLib.network.modelfile import load_model

SMOKE = CONFIGS / "experiment_smoke.toml"
SCHEMES = ("individual", "transfer", "shared", "mtmd", "mtmd_contrastive", "full")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> tuple[Path, Path]:
    out_dir = tmp_path_factory.mktemp("experiment")
    assert main(["--smoke", "-o", str(out_dir), "--jobs", "2"]) == 0  # two worker processes
    return out_dir, out_dir / "report"


def test_smoke_experiment_evaluates_every_scheme_on_every_test_case(experiment) -> None:
    out_dir, report = experiment
    folds = load_folds(out_dir / "folds.json")
    assert len(folds) == 2
    results = load_results(report / "results_cases.csv")
    expected = {
        (scheme, fold.index, joint, case, bone.key)
        for scheme in SCHEMES
        for fold in folds
        for joint in JOINT_KEYS
        for case in fold.test[joint]
        for bone in get_joint(joint).bones
    }
    assert {(r.scheme, r.fold, r.joint, r.case, r.bone) for r in results} == expected
    assert len(results) == len(expected) == 6 * (2 * 3 + 2 * 4 + 2 * 2)  # 2 phantoms per joint
    for r in results:
        assert 0.0 <= r.metrics["dice"] <= 1.0 and 0.0 <= r.metrics["specificity"] <= 1.0
        assert r.metrics["assd"] >= 0 and (math.isinf(r.metrics["mssd"]) or r.metrics["mssd"] >= r.metrics["assd"])


def test_smoke_experiment_writes_the_report(experiment) -> None:
    out_dir, report = experiment
    names = {path.name for path in report.iterdir()}
    assert names == {
        "results.md",
        "results.csv",
        "results_cases.csv",
        "statistics.csv",
        "experiment.json",
        "embeddings.png",
        *(f"boxplots_{joint}.png" for joint in JOINT_KEYS),
    }
    with open(report / "statistics.csv", newline="") as stream:
        tests = list(csv.DictReader(stream))
    # the full scheme against the five others, per joint and pooled, for each metric
    assert {(t["baseline"], t["joint"], t["metric"]) for t in tests} == {
        (b, j, m) for b in SCHEMES[:-1] for j in (*JOINT_KEYS, "all") for m in METRIC_KEYS
    }
    assert all(0.0 <= float(t["p_value"]) <= 1.0 for t in tests)
    markdown = (report / "results.md").read_text()
    assert all(f"## {get_joint(joint).display_name}" in markdown for joint in JOINT_KEYS)
    assert "MTMD + contrastive + priors" in markdown
    summary = json.loads((report / "experiment.json").read_text())
    assert len(summary["runs"]) == 2 * (3 + 3 + 1 + 1 + 1 + 1)
    assert summary["missing_runs"] == [] and summary["jobs"] == 2
    # every run's training time, read back from its timings.json, and the mean per scheme
    assert set(summary["timings_s"]) == set(summary["runs"])
    assert all(t["train_s"] > 0 and t["evaluate_s"] > 0 and t["threads"] == 1 for t in summary["timings_s"].values())
    assert set(summary["training_minutes_by_scheme"]) == set(SCHEMES)
    # every run left a loadable model of the right layout
    shared = load_model(out_dir / "runs" / "shared" / "fold0" / "model.safetensors")
    assert shared.manifest.architecture.shared and shared.manifest.joints == list(JOINT_KEYS)
    individual = load_model(out_dir / "runs" / "individual" / "fold1-knee" / "model.safetensors")
    assert individual.manifest.joints == ["knee"] and individual.manifest.provenance["scheme"] == "individual"
    transfer = load_model(out_dir / "runs" / "transfer" / "fold0-shoulder" / "model.safetensors")
    assert transfer.manifest.joints == ["shoulder"]


def test_rerun_reuses_finished_runs_and_refuses_a_changed_configuration(experiment) -> None:
    out_dir, report = experiment
    before = (report / "results_cases.csv").read_text()
    config = load_experiment_config(SMOKE)
    timings = json.loads((report / "experiment.json").read_text())["timings_s"]
    run_experiment(config, out_dir, show_progress=False)  # nothing to train: evaluations are reused
    assert (report / "results_cases.csv").read_text() == before
    assert json.loads((report / "experiment.json").read_text())["timings_s"] == timings  # the runs' own
    with pytest.raises(ValueError, match="another configuration"):
        run_experiment(with_overrides(config, steps=5), out_dir, show_progress=False)


def test_a_moved_folder_without_models_continues_and_reports_alike(experiment, tmp_path) -> None:
    """What a committed experiment folder keeps (no phantoms, models, checkpoints or TensorBoard
    events) is enough: nothing is retrained and the report is the same, embeddings included."""
    out_dir, report = experiment
    moved = tmp_path / "moved"
    ignored = shutil.ignore_patterns("data", "report", "*.safetensors", "tensorboard")
    shutil.copytree(out_dir, moved, ignore=ignored)
    run_experiment(load_experiment_config(SMOKE), moved, show_progress=False)
    assert (moved / "report" / "results_cases.csv").read_text() == (report / "results_cases.csv").read_text()
    moved_summary = json.loads((moved / "report" / "experiment.json").read_text())
    assert moved_summary["timings_s"] == json.loads((report / "experiment.json").read_text())["timings_s"]
    assert not list(moved.glob("runs/**/model.safetensors"))
    assert (moved / "report" / "embeddings.png").stat().st_size > 10_000


def test_report_only_reports_the_complete_folds_and_names_the_missing_runs(experiment, tmp_path) -> None:
    out_dir, _ = experiment
    partial = tmp_path / "partial"
    shutil.copytree(out_dir, partial, ignore=shutil.ignore_patterns("report"))
    (partial / "runs" / "mtmd" / "fold1" / "evaluation.csv").unlink()
    (partial / "runs" / "individual" / "fold1-knee" / "evaluation.csv").unlink()
    assert main([str(SMOKE), "-o", str(partial), "--report-only"]) == 0
    assert not (partial / "runs" / "mtmd" / "fold1" / "evaluation.csv").exists()  # nothing trained or evaluated
    summary = json.loads((partial / "report" / "experiment.json").read_text())
    assert summary["missing_runs"] == ["individual/fold1-knee", "mtmd/fold1"] and summary["reported_folds"] == [0]
    assert set(summary["timings_s"]) == set(summary["runs"]) - set(summary["missing_runs"])
    assert (
        "partial: 1 of 2 folds complete (reported), 18 of 20 runs finished"
        in (partial / "report" / "results.md").read_text()
    )
    # every scheme is summarized over the same test cases: those of the complete fold
    results = load_results(partial / "report" / "results_cases.csv")
    assert {r.fold for r in results} == {0}
    assert {(r.scheme, r.joint) for r in results} == {(scheme, joint) for scheme in SCHEMES for joint in JOINT_KEYS}
    # no complete fold: a clear error, no report
    (partial / "runs" / "full" / "fold0" / "evaluation.csv").unlink()
    shutil.rmtree(partial / "report")
    assert main([str(SMOKE), "-o", str(partial), "--report-only"]) == 1
    assert not (partial / "report").exists()


def test_plan_has_one_network_per_joint_for_individual_and_transfer() -> None:
    config = load_experiment_config(SMOKE)
    from pbseg_training.crossval import make_folds

    folds = make_folds({joint: ["a", "b", "c"] for joint in JOINT_KEYS}, 2, seed=0)
    runs = plan_runs(config, JOINT_KEYS, folds)
    assert len(runs) == 20
    assert [r.fold.index for r in runs] == [0] * 10 + [1] * 10  # fold by fold: a stopped run has whole folds
    individual = [r for r in runs if r.scheme == "individual"]
    assert all(r.trained == (r.target,) and r.evaluated == (r.target,) for r in individual)
    transfer = [r for r in runs if r.scheme == "transfer"]
    assert all(r.trained == JOINT_KEYS and r.evaluated == (r.target,) for r in transfer)
    full = [r for r in runs if r.scheme == "full"]
    assert [r.evaluated for r in full] == [JOINT_KEYS, JOINT_KEYS]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("folds = 1\n[phantoms]\n", "folds"),
        ('schemes = ["full", "ensemble"]\n[phantoms]\n', "unknown schemes"),
        ('schemes = ["mtmd"]\n[phantoms]\n', "reference"),
        ("folds = 2\n", "either"),
        ("[phantoms]\n[training]\nscheme = 'full'\n", "may not set"),
        ("[phantoms]\n[training]\nsteps = 0\n", "steps"),
        ("[phantoms]\n[training]\nlearning_rat = 0.1\n", "learning_rat"),
        ("[phantoms]\ncases = 'many'\nvoxels = 2\n", "voxels"),
        ("folds = = 2", "experiment.toml"),
    ],
)
def test_bad_experiment_configuration_names_the_file_and_problem(tmp_path, text: str, problem: str) -> None:
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match="experiment.toml") as error:
        load_experiment_config(path)
    assert problem in str(error.value)
    assert main([str(path), "-o", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_sigterm_stops_the_experiment_and_its_worker_processes(tmp_path) -> None:
    command = [sys.executable, "-m", "pbseg_training.experiment", "--smoke", "-o", str(tmp_path), "--jobs", "2"]
    process = subprocess.Popen(
        [*command, "--steps", "100000"], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("runs/*/*/tensorboard")) and time.monotonic() < deadline:
        time.sleep(0.5)  # until the workers are training
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert "run the same command again" in process.stderr.read().decode()
    deadline = time.monotonic() + 20  # the workers, then multiprocessing's resource tracker, exit
    with pytest.raises(ProcessLookupError):  # nothing of the experiment left running in its process group
        while time.monotonic() < deadline:
            os.killpg(process.pid, 0)
            time.sleep(0.2)
