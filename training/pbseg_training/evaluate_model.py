"""Re-evaluate a model file on freshly generated, held-out phantoms and print its model card tables.

``python -m pbseg_training.evaluate_model [MODEL] [--cases N] [--protocols F ...] [--seed S] [--json OUT]``

For every joint and every protocol family (generator 2.0; all families unless ``--protocols``
names some), N phantoms generated with seeds never used for training go through the same pipeline
as ``pbseg segment`` (joint auto-detection, post-processing). Reported: per-bone Dice and ASSD (3D,
mm) with the true joint, pooled and per protocol family, the auto-detection confusion table, and
the out-of-distribution check on volumes that are no joint MR (noise, a smooth head-like volume, a
CT-like volume). ``--generator 1.0`` evaluates on the original one-contrast-per-joint phantoms.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from pbseg_training.phantoms import GENERATOR_VERSION, generate_phantom
from pbseg_training.phantoms.generator import VERSIONS, case_seed
from pbseg_training.phantoms.protocols import FAMILIES
from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint
from PediatricBoneSegLib.network.modelfile import LoadedModel, load_model, resave_model
from PediatricBoneSegLib.options import SegmentOptions
from PediatricBoneSegLib.pipeline.detection import choose_joint
from PediatricBoneSegLib.pipeline.inference import model_slicings, segment_image
from PediatricBoneSegLib.resources import bundled_model_path

from .metrics import image_metrics

IN_VIEW_ML = 1.0  # a bone with less of it in the field of view is also summarized apart
HELD_OUT_SEED = 90_000  # the bundled models' training data use seeds 1100-1300 (model 1), 2100-2300 (model 2)


def out_of_distribution_volumes(seed: int) -> dict[str, sitk.Image]:
    """Volumes that are not joint MRs, on a typical anisotropic grid."""
    rng = np.random.default_rng(seed)
    shape = (30, 256, 256)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    head = ((x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 1.1) ** 2 < 1).astype(float)
    brain = head * (0.6 + 0.25 * np.sin(12 * x) * np.cos(10 * y)) + 0.3 * head * ((x**2 + y**2) < 0.05)
    ct = np.where(head > 0, 40.0, -1000.0) + 1200.0 * (
        ((x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 1.1) ** 2 > 0.85) & (head > 0)
    )
    volumes = {
        "noise": rng.rayleigh(1.0, shape),
        "head MR": brain * 1000 + rng.normal(0, 20, shape),
        "head CT": ct + rng.normal(0, 10, shape),
    }
    images = {}
    for name, array in volumes.items():
        image = sitk.GetImageFromArray(array.astype(np.float32))
        image.SetSpacing((0.7, 0.7, 3.0))
        images[name] = image
    return images


def case_families(version: str, protocols: Sequence[str]) -> list[str | None]:
    """The protocol family of each case in turn: generator 1.0 has none (one contrast per joint)."""
    return [None] if version == "1.0" else list(protocols)


def held_out_cases(cases: int, seed: int, version: str, protocols: Sequence[str], voxel_scale: float = 1.0):
    """(joint, protocol family or None, phantom) of the evaluation: ``cases`` per joint and family
    (generator 2.0) or per joint (1.0). Case i of a joint has seed ``case_seed(seed + joint, i)``."""
    families = case_families(version, protocols)
    for joint_index, joint in enumerate(JOINT_KEYS):
        for index in range(cases * len(families)):
            family = families[index % len(families)]
            seed_i = case_seed(seed + joint_index, index)
            phantom = generate_phantom(joint, seed_i, voxel_scale=voxel_scale, version=version, protocol=family)
            yield joint, family, phantom


def acquisition_of(parameters: dict) -> str | None:
    """A phantom's acquisition as the model card groups it: "3D", or "2D <plane>" (the plane of
    its thick slices); None for generator 1.0 (no protocol drawn)."""
    protocol = parameters.get("protocol")
    if not protocol:
        return None
    return "3D" if protocol["acquisition"] == "3D" else f"2D {protocol['plane']}"


def evaluate(
    loaded: LoadedModel,
    cases: int,
    seed: int,
    version: str = GENERATOR_VERSION,
    protocols: Sequence[str] = FAMILIES,
    voxel_scale: float = 1.0,
) -> dict:
    """All figures of the model card as plain data (``voxel_scale`` > 1: coarser phantoms, for tests)."""
    metrics: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    confusion: dict[str, dict[str, int]] = {joint: defaultdict(int) for joint in JOINT_KEYS}
    confidences: list[float] = []
    false_warnings = 0  # held-out joint MRs flagged as out of distribution
    forced_warned = 0  # cases segmented as another joint (forced) whose result says so
    seconds = []
    for joint, family, phantom in held_out_cases(cases, seed, version, protocols, voxel_scale):
        started = time.perf_counter()
        result = segment_image(phantom.image, SegmentOptions(joint="auto"), model=loaded)
        seconds.append(time.perf_counter() - started)
        confusion[joint][result.joint] += 1
        confidences.append(result.joint_confidence or 0.0)
        false_warnings += any("does not look like" in warning for warning in result.warnings)
        wrong = JOINT_KEYS[(JOINT_KEYS.index(joint) + 1) % len(JOINT_KEYS)]
        # The warning comes from the joint check alone: no need to segment the volume as that joint.
        forced = choose_joint(loaded, wrong, model_slicings(loaded, phantom.image), torch.device("cpu"))
        forced_warned += any("was requested but the volume looks like" in warning for warning in forced.warnings)
        if result.joint != joint:  # segmentation quality is measured with the true joint
            result = segment_image(phantom.image, SegmentOptions(joint=joint), model=loaded)
        truth = sitk.GetArrayViewFromImage(phantom.labels)
        voxel_ml = float(np.prod(phantom.labels.GetSpacing())) / 1000.0
        cut = phantom.parameters.get("cut_bones", [])
        acquisition = acquisition_of(phantom.parameters)
        for bone, values in image_metrics(result.labels, phantom.labels, joint).items():
            truth_ml = float(np.count_nonzero(truth == get_joint(joint).label_of(bone))) * voxel_ml
            if truth_ml > 0:  # a bone wholly outside the field of view is not scored
                metrics[joint][bone].append(
                    {**values, "protocol": family, "acquisition": acquisition, "cut": bone in cut, "truth_ml": truth_ml}
                )
    out_of_distribution = {}
    for name, image in out_of_distribution_volumes(seed).items():
        result = segment_image(image, SegmentOptions(joint="auto"), model=loaded)
        out_of_distribution[name] = {
            "nearest": result.joint,
            "distance": result.joint_novelty,
            "warned": any("does not look like" in warning for warning in result.warnings),
        }
    return {
        "model": str(loaded.path),
        "cases_per_joint": cases * len(case_families(version, protocols)),
        "generator_version": version,
        "protocols": [family for family in case_families(version, protocols) if family],
        "seed": seed,
        "threshold": loaded.manifest.detection.threshold,
        "metrics": {j: {b: values for b, values in bones.items()} for j, bones in metrics.items()},
        "confusion": {j: dict(row) for j, row in confusion.items()},
        "mean_confidence": float(np.mean(confidences)),
        "false_out_of_distribution_warnings": false_warnings,
        "forced_wrong_joint_warned": forced_warned,
        "median_seconds_per_case": float(np.median(seconds)),
        "out_of_distribution": out_of_distribution,
    }


def summary(results: dict) -> dict:
    """The model card's figures in a few numbers (for the manifest's provenance)."""
    per_bone = {
        f"{joint}/{bone}": {
            "dice_mean": round(float(np.mean([v["dice"] for v in values])), 4),
            "dice_min": round(float(np.min([v["dice"] for v in values])), 4),
            "assd_mm_mean": round(float(np.mean([v["assd"] for v in values])), 3),
        }
        for joint, bones in results["metrics"].items()
        for bone, values in bones.items()
    }
    correct = sum(row.get(joint, 0) for joint, row in results["confusion"].items())
    total = sum(sum(row.values()) for row in results["confusion"].values())
    by_family = dice_by_family(results)
    return {
        "evaluation": (
            f"held-out phantoms (generator {results['generator_version']}), {results['cases_per_joint']} per joint, "
            f"seed {results['seed']}"
        ),
        "per_bone": per_bone,
        "dice_mean_by_protocol": {
            f"{bone}/{family}": round(value, 4)
            for bone, families in by_family.items()
            for family, value in families.items()
        },
        "joint_detection_accuracy": round(correct / total, 4),
        "false_out_of_distribution_warnings": results["false_out_of_distribution_warnings"],
        "forced_wrong_joint_warned": round(results["forced_wrong_joint_warned"] / total, 4),
    }


def dice_by_family(results: dict) -> dict[str, dict[str, float]]:
    """Mean Dice per ``joint/bone`` and protocol family (empty for generator 1.0)."""
    table: dict[str, dict[str, float]] = {}
    for joint, bones in results["metrics"].items():
        for bone, values in bones.items():
            families = sorted({v["protocol"] for v in values if v["protocol"] is not None})
            table[f"{joint}/{bone}"] = {
                family: float(np.mean([v["dice"] for v in values if v["protocol"] == family])) for family in families
            }
    return table


def dice_by_acquisition(results: dict) -> dict[str, dict[str, float]]:
    """Mean Dice per ``joint/bone`` and acquisition (``acquisition_of``; empty for generator 1.0)."""
    table: dict[str, dict[str, float]] = {}
    for joint, bones in results["metrics"].items():
        for bone, values in bones.items():
            kinds = sorted({v["acquisition"] for v in values if v.get("acquisition")})
            table[f"{joint}/{bone}"] = {
                kind: float(np.mean([v["dice"] for v in values if v.get("acquisition") == kind])) for kind in kinds
            }
    return table


def markdown(results: dict) -> str:
    lines = ["| joint | bone | Dice (%) | ASSD (mm) |", "|---|---|---|---|"]
    for joint, bones in results["metrics"].items():
        for bone_key in [bone.key for bone in get_joint(joint).bones]:
            dice = np.array([v["dice"] for v in bones[bone_key]]) * 100
            assd = np.array([v["assd"] for v in bones[bone_key]])
            name = get_joint(joint).bones[get_joint(joint).label_of(bone_key) - 1].display_name
            lines.append(
                f"| {joint} | {name} | {dice.mean():.1f} ± {dice.std():.1f} (min {dice.min():.1f}) "
                f"| {assd.mean():.2f} ± {assd.std():.2f} |"
            )
    scored = [v for bones in results["metrics"].values() for values in bones.values() for v in values]
    pooled = [v["dice"] for v in scored]
    lines += ["", f"All bones pooled: mean Dice {100 * np.mean(pooled):.1f} %, worst {100 * np.min(pooled):.1f} %"]
    # Dice of a bone the field of view barely cuts into is a few voxels' worth: shown apart, the
    # targets are judged on all bones
    seen = [v["dice"] for v in scored if v.get("truth_ml", np.inf) >= IN_VIEW_ML]
    if seen and len(seen) < len(pooled):
        lines.append(
            f"Bones with at least {IN_VIEW_ML:g} ml in view ({len(seen)} of {len(pooled)}): "
            f"mean Dice {100 * np.mean(seen):.1f} %, worst {100 * np.min(seen):.1f} %"
        )
    by_family = dice_by_family(results)
    families = results.get("protocols") or []
    if families:
        lines += ["", "Mean Dice (%) per protocol family", "", "| bone | " + " | ".join(families) + " |"]
        lines.append("|---" * (len(families) + 1) + "|")
        for bone, row in by_family.items():
            lines.append(
                f"| {bone} | " + " | ".join(f"{100 * row[f]:.1f}" if f in row else "-" for f in families) + " |"
            )
    by_acquisition = dice_by_acquisition(results)
    kinds = sorted({kind for row in by_acquisition.values() for kind in row})
    if kinds:
        counts = {
            kind: sum(
                v.get("acquisition") == kind
                for bones in results["metrics"].values()
                for values in bones.values()
                for v in values
            )
            for kind in kinds
        }
        lines += ["", "Mean Dice (%) per acquisition (bones scored)", "", "| bone | " + " | ".join(kinds) + " |"]
        lines.append("|---" * (len(kinds) + 1) + "|")
        lines.append("| (bones) | " + " | ".join(str(counts[kind]) for kind in kinds) + " |")
        for bone, row in by_acquisition.items():
            lines.append(f"| {bone} | " + " | ".join(f"{100 * row[k]:.1f}" if k in row else "-" for k in kinds) + " |")
    lines += [
        "",
        "Auto-detection (rows: true joint, columns: detected)",
        "",
        "| true \\ detected | " + " | ".join(JOINT_KEYS) + " |",
        "|---" * (len(JOINT_KEYS) + 1) + "|",
    ]
    correct = total = 0
    for joint, row in results["confusion"].items():
        lines.append(f"| {joint} | " + " | ".join(str(row.get(other, 0)) for other in JOINT_KEYS) + " |")
        correct += row.get(joint, 0)
        total += sum(row.values())
    lines += [
        "",
        f"Auto-detection accuracy: {correct}/{total} ({100 * correct / total:.1f}%), mean confidence "
        f"{results['mean_confidence']:.3f}; held-out phantoms wrongly flagged as out of distribution: "
        f"{results['false_out_of_distribution_warnings']}/{total}; cases forced to a wrong joint whose result "
        f"warns of it: {results['forced_wrong_joint_warned']}/{total}; median time per case "
        f"{results['median_seconds_per_case']:.1f} s",
        "",
        f"Out-of-distribution check (threshold {results['threshold']:.3f}):",
        "",
        "| volume | nearest joint | distance | warned |",
        "|---|---|---|---|",
    ]
    for name, entry in results["out_of_distribution"].items():
        lines.append(
            f"| {name} | {entry['nearest']} | {entry['distance']:.3f} | {'yes' if entry['warned'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pbseg_training.evaluate_model", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", nargs="?", type=Path, default=bundled_model_path())
    parser.add_argument(
        "--cases", type=int, default=2, help="held-out phantoms per joint and protocol family (default 2)"
    )
    parser.add_argument("--protocols", nargs="+", choices=FAMILIES, default=FAMILIES, metavar="FAMILY")
    parser.add_argument("--generator", choices=VERSIONS, default=GENERATOR_VERSION, help="phantom generator version")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--record", action="store_true", help="store the summary in the model's manifest")
    args = parser.parse_args(argv)
    loaded = load_model(args.model)
    results = evaluate(loaded, args.cases, args.seed, args.generator, args.protocols)
    if args.record:
        loaded.manifest.provenance["metrics"] = summary(results)
        resave_model(loaded, args.model)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
