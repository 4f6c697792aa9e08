"""The distribution-shift experiment: its design (site protocols, unseen protocols, ages and
morphology per rendering), datasets that record what was drawn, folds by subject, trainings that
see only the site's images, and a report split by test condition and protocol. One joint, coarse
phantoms and tiny trainings: the machinery, not the figures."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from pbseg_training.crossval import load_folds
from pbseg_training.dataset import PARAMETERS, RawDataset
from pbseg_training.experiment import CONFIGS, run_experiment
from pbseg_training.experiment_config import PhantomSpec, load_experiment_config
from pbseg_training.phantoms import generate_phantom
from pbseg_training.results import load_results
from pbseg_training.shift import (
    CONDITION_TITLES,
    CONDITIONS,
    NO_SITE,
    OTHER_SITE,
    SEEN,
    SPLIT_TITLES,
    ShiftSpec,
    parse_case,
    write_shift_dataset,
)

CONFIG = CONFIGS / "experiment_shift.toml"
SPEC = ShiftSpec({"knee": ("PD_FS", "T2_FS"), "ankle": ("GRE",), "shoulder": ("T1", "PD")})


def test_each_subject_is_rendered_at_its_site_and_under_every_shift() -> None:
    for subject in range(4):
        renderings = SPEC.renderings("knee", subject, seed=1000 + subject)
        assert [r.condition for r in renderings] == ["seen", "protocol", "protocol", "anatomy"]
        seen, first, second, anatomy = renderings
        assert seen.family in ("PD_FS", "T2_FS") and anatomy.family == seen.family
        assert {first.family, second.family}.isdisjoint(("PD_FS", "T2_FS")) and first.family != second.family
        assert 7.0 <= seen.age_years <= 12.0 and first.age_years == second.age_years == seen.age_years
        assert not 5.0 < anatomy.age_years < 14.0 and anatomy.pathology and not seen.pathology
        assert [parse_case(r.case_id)[1:] for r in renderings] == [(r.condition, r.family) for r in renderings]
    assert SPEC.renderings("knee", 2, 7) == SPEC.renderings("knee", 2, 7)


def test_unseen_protocols_are_told_apart_by_whether_another_joints_site_used_them() -> None:
    assert SPEC.protocol_split("knee", "T1") == OTHER_SITE  # the shoulder's site
    assert SPEC.protocol_split("knee", "GRE") == OTHER_SITE  # the ankle's
    assert SPEC.protocol_split("knee", "STIR") == NO_SITE
    assert SPEC.protocol_split("ankle", "GRE") == NO_SITE  # its own site, no other


@pytest.mark.parametrize(
    "values, problem",
    [
        ({"site_protocols": {"knee": ("PD_FS", "T2_FS", "T1")}}, "one or two distinct"),
        ({"site_protocols": {"knee": ("FLAIR",)}}, "one or two distinct"),
        ({"site_protocols": {"knee": ("T1",)}, "shifted_ages": ((8.0, 9.0),)}, "outside the cohort"),
        ({"site_protocols": {"knee": ("T1",)}, "cohort_ages": (12.0, 7.0)}, "cohort_ages"),
    ],
)
def test_a_bad_shift_design_is_refused(values: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ShiftSpec(**values)


@pytest.mark.parametrize("joint", ["shoulder", "knee", "ankle"])
def test_forced_pathology_draws_the_pathological_or_typical_morphology(joint: str) -> None:
    drawn = {
        pathology: [generate_phantom(joint, seed, voxel_scale=4.0, pathology=pathology) for seed in (1, 2, 3)]
        for pathology in (True, False)
    }
    for pathology, phantoms in drawn.items():
        for phantom in phantoms:
            morphology = phantom.parameters["morphology"]
            if joint == "shoulder":
                assert morphology["palsy"] is pathology and (morphology["version_deg"] <= -12.0) is pathology
            elif joint == "knee":
                assert (morphology["dysplasia"] >= 0.6) is pathology and (
                    morphology["dysplasia"] <= 0.25
                ) is not pathology
            else:
                turned = (
                    abs(morphology["calcaneus_pitch_deg"]) >= 8.0
                    and abs(morphology["calcaneus_divergence_deg"]) >= 10.0
                )
                assert turned is pathology
    with pytest.raises(ValueError, match="version 2.0"):
        generate_phantom("knee", 1, voxel_scale=4.0, version="1.0", pathology=True)


def test_the_dataset_records_each_renderings_protocol_age_and_condition(tmp_path) -> None:
    folder = write_shift_dataset("knee", 2, 11, tmp_path / "knee", SPEC, voxel_scale=4.0)
    cases = RawDataset(folder).cases
    assert len(cases) == 2 * 4
    for case in cases:
        parameters = json.loads((folder / PARAMETERS / f"{case.case_id}.json").read_text())
        _, condition, family = parse_case(case.case_id)
        assert parameters["protocol"]["family"] == family and parameters["shift_condition"] == condition
        assert (7.0 <= parameters["age_years"] <= 12.0) is (condition != "anatomy")
        assert (parameters["morphology"]["dysplasia"] >= 0.6) is (condition == "anatomy")
    metadata = json.loads((folder / "dataset.json").read_text())
    assert metadata["site_protocols"] == ["PD_FS", "T2_FS"]


def test_the_committed_configuration_is_valid_and_names_every_joint() -> None:
    config = load_experiment_config(CONFIG)
    assert config.shift is not None and set(config.shift.site_protocols) == set(config.phantoms.joints)
    assert len(config.schemes) == 6 and config.folds == 3
    assert 4 <= config.phantoms.cases * (config.folds - 1) // config.folds <= 6  # training subjects per joint
    with pytest.raises(ValueError, match="needs \\[phantoms\\] of generator 2.0"):
        replace(config, phantoms=replace(config.phantoms, generator_version="1.0"))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """Three knee subjects, 3-fold by subject, two schemes, trainings of two steps."""
    config = load_experiment_config(CONFIG)
    config = replace(
        config,
        folds=3,
        schemes=("individual", "full"),
        phantoms=PhantomSpec(cases=3, seed=7000, voxel_scale=4.0, joints=("knee",)),
        shift=replace(config.shift, site_protocols={"knee": ("PD_FS", "T2_FS")}),
        training={
            **config.training,
            "imagenet_weights": None,
            "decoder_channels": (16, 16, 8, 8, 8),
            "input_size": 64,
            "steps": 2,
            "warmup_steps": 1,
            "shape_prior_steps": 2,
            "shape_prior_size": 32,
            "shape_prior_latent": 16,
            "checkpoint_every": 1000,
        },
    )
    out_dir = tmp_path_factory.mktemp("shift")
    run_experiment(config, out_dir, show_progress=False)
    return out_dir


def test_runs_train_on_the_site_images_of_their_subjects_and_test_every_rendering(experiment: Path) -> None:
    folds = load_folds(experiment / "folds.json")
    for fold in folds:
        test_subjects = {parse_case(case)[0] for case in fold.test["knee"]}
        train_subjects = {parse_case(case)[0] for case in fold.train["knee"]}
        assert len(test_subjects) == 1 and not test_subjects & train_subjects  # by subject
        assert len(fold.test["knee"]) == 4  # every rendering of the test subject
        for run in ("individual/fold{}-knee", "full/fold{}"):
            saved = json.loads((experiment / "runs" / run.format(fold.index) / "training_config.json").read_text())
            trained = saved["datasets"][0]["cases"]
            assert sorted(trained) == sorted(c for c in fold.train["knee"] if parse_case(c)[1] == SEEN)
            assert len(trained) == 2
    tested = {(r.fold, r.case) for r in load_results(experiment / "report" / "results_cases.csv")}
    assert tested == {(fold.index, case) for fold in folds for case in fold.test["knee"]}


def test_the_report_is_split_by_condition_and_protocol(experiment: Path) -> None:
    report = experiment / "report"
    for condition in CONDITIONS:
        results = load_results(report / condition / "results_cases.csv")
        assert results and {parse_case(r.case)[1] for r in results} == {condition}
        assert (report / condition / "statistics.csv").exists()
    with open(report / "by_protocol.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    cases = load_results(report / "results_cases.csv")
    assert {(r["scheme"], r["condition"], r["protocol"]) for r in rows} == {
        (c.scheme, *parse_case(c.case)[1:]) for c in cases
    }
    side_by_side = (report / "conditions.md").read_text()
    assert all(title in side_by_side for title in CONDITION_TITLES.values())
    table = [line for line in side_by_side.splitlines() if line.startswith("| Individual |")]
    # all joints, knee, full vs it; the knee alone has a site, so its unseen protocols are no site's
    assert SPLIT_TITLES[NO_SITE] in side_by_side and SPLIT_TITLES[OTHER_SITE] not in side_by_side
    assert len(table) == 3 and table[-1].count("p = ") == len(CONDITIONS) + 1
    summary = json.loads((report / "experiment.json").read_text())
    assert set(summary["core_hours_by_scheme"]) == {"individual", "full"}
