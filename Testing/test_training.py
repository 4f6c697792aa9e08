"""The training framework on tiny phantoms: every scheme learns, resume is exact, torchrun works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from safetensors.torch import load_file

from pbseg_training.checkpoint import load_checkpoint
from pbseg_training.config import SCHEMES, DatasetSpec, TrainingConfig, config_from_dict
from pbseg_training.data import load_domain, sample_indices
from pbseg_training.dataset import write_raw_dataset
from pbseg_training.evaluate_model import dice_by_acquisition, dice_by_family, evaluate, markdown
from pbseg_training.phantoms import write_phantom_dataset
from pbseg_training.phantoms.appearance import TISSUES
from pbseg_training.phantoms.generator import GENERATOR_VERSION
from pbseg_training.trainer import CHECKPOINT_NAME, HISTORY_NAME, train
from PediatricBoneSegLib.catalog import JOINT_KEYS
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.network.modelfile import load_model

TINY = {
    "name": "tiny",
    "seed": 0,
    "encoder": "resnet18",
    "decoder_channels": [16, 16, 8, 8, 8],
    "input_size": 64,
    "batch_per_domain": 2,
    "learning_rate": 3e-3,
    "warmup_steps": 1,
    "shape_prior_steps": 20,
    "shape_prior_size": 32,
    "shape_prior_latent": 16,
    "augment": False,
    "checkpoint_every": 4,
    "log_every": 1,
}


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    for seed, joint in enumerate(JOINT_KEYS):
        write_phantom_dataset(joint, 2, 40 + seed, root / joint, voxel_scale=3.0)
    return root


def tiny_config(root: Path, **overrides) -> TrainingConfig:
    raw = {**TINY, "datasets": [{"path": str(root / joint)} for joint in JOINT_KEYS], **overrides}
    return config_from_dict(raw)


def history(run: Path) -> list[float]:
    return list(json.loads((run / HISTORY_NAME).read_text()).values())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_scheme_trains_and_its_loss_decreases(scheme: str, phantom_root: Path, tmp_path: Path) -> None:
    target = {"target_joint": "knee"} if scheme in ("individual", "transfer") else {}
    config = tiny_config(phantom_root, scheme=scheme, steps=24, **target)
    model_path = train(config, tmp_path, show_progress=False)
    losses = history(tmp_path)
    assert len(losses) == 24
    tail = losses[12:] if scheme == "transfer" else losses  # transfer: the fine-tuning phase
    assert sum(tail[-4:]) / 4 < sum(tail[:4]) / 4, losses
    loaded = load_model(model_path)
    expected = ["knee"] if scheme in ("individual", "transfer") else list(JOINT_KEYS)
    assert loaded.manifest.joints == expected
    provenance = loaded.manifest.provenance
    assert provenance["scheme"] == scheme
    assert abs(provenance["final_loss"] - sum(losses[-50:]) / len(losses[-50:])) < 1e-3
    assert {entry["generator_version"] for entry in provenance["data"]} == {GENERATOR_VERSION}
    assert loaded.manifest.architecture.shared == (scheme == "shared")
    # joint detection fitted on the training volumes: one classifier output per joint
    assert loaded.manifest.detection.method == "classifier" and loaded.centroids is None
    assert loaded.classifier is not None and loaded.classifier.bias.shape[0] == len(expected)
    assert len(loaded.classifier.reference) == sum(entry["cases"] for entry in provenance["data"])


def test_interrupted_and_resumed_run_ends_in_the_same_weights(phantom_root: Path, tmp_path: Path) -> None:
    config = tiny_config(phantom_root, scheme="full", steps=8, augment=True)
    straight = train(config, tmp_path / "straight", show_progress=False)
    assert train(config, tmp_path / "resumed", show_progress=False, stop_at=6) is None
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    assert (tmp_path / "resumed" / CHECKPOINT_NAME).exists()
    first_part_s = load_checkpoint(tmp_path / "resumed" / CHECKPOINT_NAME).info["elapsed_s"]
    resumed = train(config, tmp_path / "resumed", resume=True, show_progress=False)
    # the exported training time covers both parts (shape prior pre-training included), not the last one only
    assert load_model(resumed).manifest.provenance["training_seconds"] >= first_part_s - 0.05
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert different == []
    assert len(history(tmp_path / "resumed")) == 8


def test_warm_start_continues_from_an_exported_model_and_refuses_another_network(
    phantom_root: Path, tmp_path: Path
) -> None:
    config = tiny_config(phantom_root, scheme="full", steps=12)
    first = train(config, tmp_path / "first", show_progress=False)
    warm = config.with_overrides(initial_model=str(first), steps=4)
    continued = train(warm, tmp_path / "warm", show_progress=False)
    # step 0 draws the same batch in both runs: the warm start has already learned it
    assert history(tmp_path / "warm")[0] < 0.8 * history(tmp_path / "first")[0]
    assert load_model(continued).manifest.provenance["initial_model"] == "model.safetensors"
    other = warm.with_overrides(decoder_channels=(8, 8, 8, 8, 8))
    with pytest.raises(ValueError, match=r"model\.safetensors: its network .* is not the one"):
        train(other, tmp_path / "other", show_progress=False)


def test_two_process_torchrun_on_cpu_exports_a_loadable_model(phantom_root: Path, tmp_path: Path) -> None:
    lines = [f"{key} = {json.dumps(value)}" for key, value in {**TINY, "scheme": "mtmd", "steps": 4}.items()]
    lines += [f'[[datasets]]\npath = "{phantom_root / joint}"' for joint in JOINT_KEYS]
    config_path = tmp_path / "ddp.toml"
    config_path.write_text("\n".join(lines) + "\n")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
        "-m",
        "pbseg_training.cli",
        str(config_path),
        "-o",
        str(tmp_path / "run"),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = load_model(tmp_path / "run" / "model.safetensors")
    assert loaded.manifest.joints == list(JOINT_KEYS)


def test_invalid_configuration_lists_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"scheme 'bogus'.*no datasets"):
        config_from_dict({"scheme": "bogus"})
    with pytest.raises(ValueError, match="unknown training configuration keys: stepz"):
        config_from_dict({"stepz": 3, "datasets": [{"path": str(tmp_path)}]})


def test_tissue_maps_reach_the_pools_and_synthesis_trains_from_them(phantom_root: Path, tmp_path: Path) -> None:
    pool = load_domain(DatasetSpec(str(phantom_root / "knee")), PreprocessingConfig(size=64))
    assert pool.tissues is not None and pool.tissues.shape == pool.labels.shape
    assert int(pool.tissues.max()) < len(TISSUES) and len(pool.tissues.unique()) > 4
    bone = pool.labels > 0
    assert set(pool.tissues[bone].unique().tolist()) & {TISSUES.index("marrow"), TISSUES.index("cortex")}
    config = tiny_config(phantom_root, scheme="mtmd", steps=4, augment=True, synthesis_probability=1.0)
    assert load_model(train(config, tmp_path, show_progress=False)).manifest.joints == list(JOINT_KEYS)


def _volume(shape_zyx: tuple[int, int, int], spacing_xyz: tuple[float, float, float]) -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(0)
    labels = np.zeros(shape_zyx, np.uint8)
    labels[2:-2, 3:-3, 4:-4] = 1
    image = sitk.GetImageFromArray((rng.normal(100, 10, shape_zyx) + 200 * labels).astype(np.float32))
    label_image = sitk.GetImageFromArray(labels)
    for volume in (image, label_image):
        volume.SetSpacing(spacing_xyz)
    return image, label_image


def test_fine_volumes_are_also_sliced_along_extra_planes_and_cases_can_weigh_alike(tmp_path: Path) -> None:
    fine = _volume((20, 24, 28), (1.0, 1.0, 1.0))  # near-isotropic: S 20, P 24, L 28 voxels
    thick = _volume((6, 24, 28), (1.0, 1.0, 4.0))  # a 2D axial series: 6 slices of 4 mm
    write_raw_dataset(tmp_path / "knee", "knee", [("knee_000", *fine), ("knee_001", *thick)], 2)
    spec, preprocessing = DatasetSpec(str(tmp_path / "knee")), PreprocessingConfig(size=32)
    usual = load_domain(spec, preprocessing)
    assert torch.bincount(usual.case_index).tolist() == [28, 6]  # the knee's sagittal slices; the series' own
    pool = load_domain(spec, preprocessing, ("coronal", "axial"))
    # every other slice of the extra planes, of the fine volume only
    assert torch.bincount(pool.case_index).tolist() == [28 + 12 + 10, 6]
    assert torch.equal(pool.images[:28], usual.images[:28]) and torch.equal(pool.images[-6:], usual.images[-6:])
    assert pool.mirrorable.tolist() == [False] * 28 + [True] * 28
    generator = torch.Generator().manual_seed(0)
    by_slice = torch.bincount(pool.case_index[sample_indices(pool, 4000, 0.0, generator)], minlength=2)
    by_case = torch.bincount(pool.case_index[sample_indices(pool, 4000, 0.0, generator, "cases")], minlength=2)
    assert by_slice[1] < 0.2 * 4000 and abs(by_case[1] - 2000) < 150
    foreground = sample_indices(pool, 4000, 1.0, generator, "cases")
    assert pool.foreground[foreground].all()
    assert abs(torch.bincount(pool.case_index[foreground], minlength=2)[1] - 2000) < 150
    with pytest.raises(ValueError, match=r"sampling 'some'.*extra_planes \['oblique'\]"):
        config_from_dict({"sampling": "some", "extra_planes": ["oblique"], "datasets": [{"path": "x"}]})


def test_bone_and_plane_balanced_sampling_draw_a_small_bone_and_a_rare_plane_as_often_as_others(tmp_path: Path) -> None:
    fine, fine_labels = _volume((20, 24, 28), (1.0, 1.0, 1.0))
    small = sitk.GetArrayFromImage(fine_labels)
    small[9:11, 10:12, 12:14] = 2  # a 2-voxel bone: 2 of the 28 sagittal slices, 1 coronal, 1 axial
    small_labels = sitk.GetImageFromArray(small)
    small_labels.CopyInformation(fine_labels)
    thick = _volume((6, 24, 28), (1.0, 1.0, 4.0))
    write_raw_dataset(tmp_path / "knee", "knee", [("knee_000", fine, small_labels), ("knee_001", *thick)], 2)
    pool = load_domain(DatasetSpec(str(tmp_path / "knee")), PreprocessingConfig(size=32), ("coronal", "axial"))
    assert pool.axes.tolist() == [2] * 28 + [1] * 12 + [0] * 10 + [0] * 6
    assert set(pool.strata) == {(0, 0), (0, 1), (0, 2), (1, 0)} and 2 not in pool.strata[(1, 0)]

    def shares(sampling: str, foreground_fraction: float) -> tuple[float, float, float]:
        index = sample_indices(pool, 6000, foreground_fraction, torch.Generator().manual_seed(1), sampling)
        fine_case = pool.case_index[index] == 0
        shows_small = (pool.labels[index] == 2).flatten(1).any(dim=1)
        fine_axial = fine_case & (pool.axes[index] == 0)
        return float(fine_case.float().mean()), float(shows_small.float().mean()), float(fine_axial.float().mean())

    by_case, by_bone = shares("cases", 1.0), shares("bones", 1.0)
    assert abs(by_case[0] - 0.5) < 0.03 and abs(by_bone[0] - 0.5) < 0.03  # cases weigh alike in both
    # the small bone: 4 of the fine case's 50 slices with "cases"; with "bones", one bone of two in each
    # plane (0.25, a little more: a slice drawn for the big bone may show the small one too)
    assert by_case[1] < 0.1 and 0.24 < by_bone[1] < 0.32
    assert by_case[2] < 0.12 and abs(by_bone[2] - 0.5 / 3) < 0.03  # each of the fine case's planes alike
    assert pool.foreground[sample_indices(pool, 500, 1.0, torch.Generator().manual_seed(2), "bones")].all()
    anywhere = sample_indices(pool, 4000, 0.0, torch.Generator(), "bones")
    assert not pool.foreground[anywhere].all()  # draws that need not show bone reach the empty edge slices
    # "planes": each plane a third of the draws, although only the fine case was sliced coronally and
    # sagittally; the thick case shares the axial third with the fine one
    by_plane = sample_indices(pool, 6000, 1.0, torch.Generator().manual_seed(3), "planes")
    plane_shares = torch.bincount(pool.axes[by_plane], minlength=3).float() / len(by_plane)
    assert torch.allclose(plane_shares, torch.full((3,), 1 / 3), atol=0.03)
    fine_share = float((pool.case_index[by_plane] == 0).float().mean())
    assert abs(fine_share - (2 / 3 + 1 / 6)) < 0.03 and pool.foreground[by_plane].all()


def test_model_card_evaluation_reports_dice_per_protocol_family(phantom_root: Path, tmp_path: Path) -> None:
    loaded = load_model(train(tiny_config(phantom_root, scheme="mtmd", steps=2), tmp_path, show_progress=False))
    results = evaluate(loaded, 1, 90_000, protocols=("T1", "STIR"), voxel_scale=3.0)
    assert results["cases_per_joint"] == 2 and results["generator_version"] == GENERATOR_VERSION
    for joint in JOINT_KEYS:
        assert sum(results["confusion"][joint].values()) == 2
        scored = [v for values in results["metrics"][joint].values() for v in values]
        assert {v["protocol"] for v in scored} <= {"T1", "STIR"} and all(v["truth_ml"] > 0 for v in scored)
    table = dice_by_family(results)
    assert set(table) == {f"{j}/{b}" for j in JOINT_KEYS for b in results["metrics"][j]}
    assert all(set(row) <= {"T1", "STIR"} and row for row in table.values())
    text = markdown(results)
    assert "per protocol family" in text and "| T1 | STIR |" in text
    kinds = {v["acquisition"] for bones in results["metrics"].values() for values in bones.values() for v in values}
    assert kinds and all(kind == "3D" or kind.split()[0] == "2D" for kind in kinds)
    assert set(dice_by_acquisition(results)["knee/femur"]) <= kinds
    assert "per acquisition" in text and all(f" {kind} |" in text for kind in kinds)
    # a bone barely in view is summarized apart too (the targets are judged on all)
    scored = [v for bones in results["metrics"].values() for values in bones.values() for v in values]
    assert "ml in view" not in text or min(v["truth_ml"] for v in scored) < 1.0
    scored[0]["truth_ml"], scored[0]["dice"] = 0.5, 0.0
    assert f"ml in view ({len(scored) - 1} of {len(scored)})" in markdown(results)
    assert "worst 0.0 %" in markdown(results).split("ml in view")[0]
