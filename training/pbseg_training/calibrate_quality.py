"""Calibrate a model file's per-bone quality model on held-out phantoms and a failure set.

``python -m pbseg_training.calibrate_quality MODEL -o OUT_MODEL [--cases N] [--seed S]
[--voxel-scale V] [--generator VERSION] [--json FIGURES.json]``

Every phantom (N per joint, seeds from S, far from the training seeds) is segmented as it is and
as a failure: forced to each other joint, with heavy Rician noise (three levels), cut by the field
of view, with inverted contrast, with slices dropped (2 of every 4 blank: a bone in scattered
slabs, each confidently segmented), and by a randomly initialized network of the same
architecture.
The pipeline is ``pbseg segment``'s (post-processing on, fp32, CPU). Each present bone gives the
quality features of ``pipeline.quality`` and its true Dice. A logistic model (balanced classes,
L2, each weight's sign fixed: confidence can only raise the quality, the other features only lower
it) separates bones with Dice >= 0.85 from bones with Dice < 0.7, and a threshold is chosen for
>= 90 % of the latter flagged and <= 5 % of the former. The figures are measured by 4-fold
cross-validation by phantom (a phantom and its failures in one fold; fit, volume statistics and
threshold from the other folds) and in-sample. OUT_MODEL (the model with the fitted model as its
manifest's ``quality`` section) is written only when the cross-validated figures meet both targets;
the exit code is 1 when they do not. Deterministic: same model, arguments and generator, same
figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy.optimize import minimize

from pbseg_training.phantoms import GENERATOR_VERSION, Phantom, case_seed, generate_phantom
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.network import MultiDomainUNet
from PediatricBoneSegLib.network.modelfile import LoadedModel, load_model, resave_model
from PediatricBoneSegLib.options import SegmentOptions
from PediatricBoneSegLib.pipeline.inference import segment_image
from PediatricBoneSegLib.pipeline.quality import FEATURES, QualityModel, catalog_volume_stats

HELD_OUT_SEED = 9000  # training seeds: 1100, 1200, 1300
BAD_DICE, GOOD_DICE = 0.7, 0.85
TARGET_BAD_FLAGGED, TARGET_GOOD_FLAGGED = 0.90, 0.05
NOISE_LEVELS = (0.15, 0.3, 0.6)  # noise std / the image's 1-99 percentile range
FOV_KEPT = 0.5  # central share of each in-plane axis kept by the field-of-view cut
FOLDS = 4
L2 = 0.01
SIGNS = {"confidence": 1.0}  # the sign a feature's weight may have; -1 for the others


@dataclass(frozen=True)
class Sample:
    """One bone of one segmentation (of a ``joint`` phantom, as ``segmented_as``): ``dice`` against
    the truth (0 when the bone is missing from the prediction or from the truth), ``features``
    (``FEATURES`` and ``volume_ml``; empty when the prediction has no such bone). ``group``: the
    phantom's index, for the cross-validation folds."""

    condition: str
    joint: str
    segmented_as: str
    case: int
    group: int
    bone: str
    dice: float
    features: dict[str, float]


def failure_cases(
    phantom: Phantom, joints: Sequence[str], seed: int
) -> Iterator[tuple[str, sitk.Image, sitk.Image, str]]:
    """(condition, image, truth labels, joint to force) of a phantom and of its failures (the
    untrained network's case is ``good``'s, run with another network)."""
    yield "good", phantom.image, phantom.labels, phantom.joint
    for other in joints:
        if other != phantom.joint:
            yield f"wrong joint {other}", phantom.image, phantom.labels, other
    array = sitk.GetArrayFromImage(phantom.image).astype(np.float64)
    low, high = np.percentile(array, (1, 99))
    rng = np.random.default_rng([seed, phantom.seed])
    for level in NOISE_LEVELS:
        sigma = level * (high - low)
        noisy = np.hypot(array + rng.normal(0, sigma, array.shape), rng.normal(0, sigma, array.shape))
        yield f"noise {level:g}", _like(noisy, phantom.image), phantom.labels, phantom.joint
    yield "inverted contrast", _like(array.max() - array, phantom.image), phantom.labels, phantom.joint
    axis = 2 - int(np.argmax(phantom.image.GetSpacing()))  # the slice axis, in array order
    dropped = np.moveaxis(array.copy(), axis, 0)
    dropped[np.arange(len(dropped)) // 2 % 2 == 1] = low
    yield "slices dropped", _like(np.moveaxis(dropped, 0, axis), phantom.image), phantom.labels, phantom.joint
    size = np.array(phantom.image.GetSize())
    thick = int(np.argmax(phantom.image.GetSpacing()))  # the slice axis stays whole
    keep = np.where(np.arange(3) == thick, size, np.maximum(8, np.round(size * FOV_KEPT))).astype(int)
    start = ((size - keep) // 2).tolist()
    cut = (sitk.RegionOfInterest(image, keep.tolist(), start) for image in (phantom.image, phantom.labels))
    yield "field of view cut", *cut, phantom.joint


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(reference)
    return image


def collect(
    loaded: LoadedModel, cases: int, seed: int, voxel_scale: float, generator: str = GENERATOR_VERSION
) -> list[Sample]:
    """Segment every phantom (of phantom generator version ``generator``) and its failures; one
    ``Sample`` per bone of the joint used."""
    torch.manual_seed(seed)
    untrained = dataclasses.replace(loaded, network=MultiDomainUNet(loaded.manifest.architecture).eval())
    samples = []
    for joint_index, joint in enumerate(loaded.manifest.joints):
        for case in range(cases):
            seed_of_case = case_seed(seed + joint_index, case)
            phantom = generate_phantom(joint, seed_of_case, voxel_scale=voxel_scale, version=generator)
            group = joint_index * cases + case
            runs = [(c, i, t, j, loaded) for c, i, t, j in failure_cases(phantom, loaded.manifest.joints, seed)]
            runs.append(("untrained network", phantom.image, phantom.labels, joint, untrained))
            for condition, image, truth, forced, model in runs:
                options = SegmentOptions(joint=forced, device="cpu", precision="fp32")
                result = segment_image(image, options, model=model)
                dice = bone_dice(
                    sitk.GetArrayViewFromImage(result.labels), sitk.GetArrayViewFromImage(truth), joint, forced
                )
                samples += [
                    Sample(condition, joint, forced, case, group, bone, dice[bone], result.quality[bone].features)
                    for bone in dice
                ]
    return samples


def bone_dice(prediction: np.ndarray, truth: np.ndarray, truth_joint: str, joint: str) -> dict[str, float]:
    """Dice of every bone of ``joint`` (the prediction's label space) against the truth
    (``truth_joint``'s label space, bones matched by key); bones absent from both are left out."""
    truth_spec, spec = get_joint(truth_joint), get_joint(joint)
    truth_keys = [bone.key for bone in truth_spec.bones]
    dice = {}
    for value, bone in enumerate(spec.bones, start=1):
        predicted = prediction == value
        true = truth == truth_spec.label_of(bone.key) if bone.key in truth_keys else np.zeros_like(predicted)
        total = int(predicted.sum()) + int(true.sum())
        if total:
            dice[bone.key] = 2.0 * float(np.count_nonzero(predicted & true)) / total
    return dice


def volume_statistics(samples: Sequence[Sample]) -> dict[str, tuple[float, float]]:
    """Per bone of every joint segmented, (mean, std) of ln(volume in ml) of its well-segmented
    instances (Dice >= GOOD_DICE; at least 3, else the catalog's range)."""
    logs: dict[str, list[float]] = {}
    for sample in samples:
        if sample.features and sample.dice >= GOOD_DICE:
            logs.setdefault(sample.bone, []).append(math.log(sample.features["volume_ml"]))
    stats = {s.bone: catalog_volume_stats(s.bone, s.segmented_as) for s in samples}
    stats.update({bone: (float(np.mean(v)), max(float(np.std(v)), 0.05)) for bone, v in logs.items() if len(v) >= 3})
    return stats


def feature_matrix(samples: Sequence[Sample], volume_log_ml: dict[str, tuple[float, float]]) -> np.ndarray:
    """[samples, FEATURES] of present bones, ``volume_z`` recomputed from ``volume_log_ml``."""
    rows = []
    for sample in samples:
        mean, std = volume_log_ml[sample.bone]
        volume_z = abs(math.log(sample.features["volume_ml"]) - mean) / std
        rows.append([volume_z if name == "volume_z" else sample.features[name] for name in FEATURES])
    return np.asarray(rows, dtype=float).reshape(len(rows), len(FEATURES))


def fit(samples: Sequence[Sample], calibration: dict | None = None) -> QualityModel:
    """The logistic quality model, its volume statistics and its threshold, from the present bones
    that are clearly bad (Dice < BAD_DICE) or good (>= GOOD_DICE)."""
    volume_log_ml = volume_statistics(samples)
    present = [s for s in samples if s.features and (s.dice < BAD_DICE or s.dice >= GOOD_DICE)]
    features = feature_matrix(present, volume_log_ml)
    good = np.array([s.dice >= GOOD_DICE for s in present])
    means, scales = features.mean(0), np.maximum(features.std(0), 1e-3)
    standardized = (features - means) / scales
    weight = np.where(good, 0.5 / max(good.sum(), 1), 0.5 / max((~good).sum(), 1))  # balanced classes

    def loss(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        logit = standardized @ parameters[:-1] + parameters[-1]
        probability = 1 / (1 + np.exp(-np.clip(logit, -60, 60)))
        value = -np.sum(weight * (good * np.log(probability + 1e-12) + (~good) * np.log(1 - probability + 1e-12)))
        residual = weight * (probability - good)
        penalty = np.append(parameters[:-1], 0.0)  # the bias is not penalized
        gradient = np.append(standardized.T @ residual, residual.sum()) + L2 * penalty
        return float(value) + 0.5 * L2 * float(penalty @ penalty), gradient

    bounds = [(0.0, None) if SIGNS.get(name, -1.0) > 0 else (None, 0.0) for name in FEATURES] + [(None, None)]
    solution = minimize(loss, np.zeros(len(FEATURES) + 1), jac=True, method="L-BFGS-B", bounds=bounds).x
    logits = standardized @ solution[:-1] + solution[-1]
    return QualityModel(
        weights=tuple(float(w) for w in solution[:-1]),
        means=tuple(float(m) for m in means),
        scales=tuple(float(s) for s in scales),
        bias=float(solution[-1]),
        threshold=_threshold(logits, good),
        volume_log_ml=volume_log_ml,
        calibration=calibration or {},
    )


def _threshold(logits: np.ndarray, good: np.ndarray) -> float:
    """The quality threshold: midway (in logit) between the lowest that flags >= 90 % of the bad
    bones and the highest that flags <= 5 % of the good ones; the former when they cross (a bad
    result flagged matters more than a good one checked)."""
    if not (~good).any():
        return 0.5
    detect = float(np.quantile(logits[~good], TARGET_BAD_FLAGGED, method="higher")) + 1e-6
    spare = float(np.quantile(logits[good], TARGET_GOOD_FLAGGED, method="lower")) if good.any() else detect
    chosen = (detect + spare) / 2 if detect <= spare else detect
    return float(np.clip(1 / (1 + math.exp(-chosen)), 1e-4, 1 - 1e-4))


def flags(model: QualityModel, samples: Sequence[Sample]) -> list[bool]:
    """Whether ``model`` flags each bone unreliable (a missing bone always is)."""
    present = [s for s in samples if s.features]
    stats = {**volume_statistics(present), **model.volume_log_ml}
    verdicts = iter(model.reliable(dict(zip(FEATURES, row))) for row in feature_matrix(present, stats))
    return [not s.features or not next(verdicts) for s in samples]


def figures(samples: Sequence[Sample], flagged: Sequence[bool]) -> dict:
    """Shares of bad bones (Dice < 0.7) and of good bones (Dice >= 0.85) flagged, over the bones
    present in the prediction and over all (a missing bone is always flagged)."""
    result = {}
    for scope in ("present", "all"):
        pairs = [(s.dice, f) for s, f in zip(samples, flagged) if scope == "all" or s.features]
        bad = [f for d, f in pairs if d < BAD_DICE]
        good = [f for d, f in pairs if d >= GOOD_DICE]
        middle = [f for d, f in pairs if BAD_DICE <= d < GOOD_DICE]
        result[scope] = {
            "bad_bones": len(bad),
            "bad_flagged": _share(bad),
            "good_bones": len(good),
            "good_flagged": _share(good),
            "middle_bones": len(middle),
            "middle_flagged": _share(middle),
        }
    return result


def _share(values: list[bool]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def by_condition(samples: Sequence[Sample], flagged: Sequence[bool]) -> dict:
    """Per condition: bones, mean Dice, bones with Dice < 0.7, share flagged."""
    table: dict[str, dict] = {}
    for condition in dict.fromkeys(s.condition for s in samples):
        rows = [(s, f) for s, f in zip(samples, flagged) if s.condition == condition]
        table[condition] = {
            "bones": len(rows),
            "mean_dice": round(float(np.mean([s.dice for s, _ in rows])), 4),
            "bad_bones": sum(s.dice < BAD_DICE for s, _ in rows),
            "flagged": _share([f for _, f in rows]),
        }
    return table


def calibrate(samples: Sequence[Sample], settings: dict) -> tuple[QualityModel, dict]:
    """Figures by cross-validation (folds of phantoms) and in-sample, and the model fitted on every
    sample with those figures as its ``calibration``."""
    groups = sorted({s.group for s in samples})
    cross_flags: dict[int, bool] = {}
    for fold in range(FOLDS):
        held = {g for i, g in enumerate(groups) if i % FOLDS == fold}
        model = fit([s for s in samples if s.group not in held])
        test = [i for i, s in enumerate(samples) if s.group in held]
        cross_flags.update(zip(test, flags(model, [samples[i] for i in test])))
    cross = [cross_flags[i] for i in range(len(samples))]
    cross_validated = figures(samples, cross)
    present = cross_validated["present"]
    met = bool(
        present["bad_flagged"] is not None
        and present["bad_flagged"] >= TARGET_BAD_FLAGGED
        and (present["good_flagged"] or 0.0) <= TARGET_GOOD_FLAGGED
    )
    final = fit(samples)
    report = {
        **settings,
        "targets": {
            "flag_bones_with_dice_below": BAD_DICE,
            "share_flagged_at_least": TARGET_BAD_FLAGGED,
            "spare_bones_with_dice_from": GOOD_DICE,
            "share_flagged_at_most": TARGET_GOOD_FLAGGED,
        },
        "cross_validated": cross_validated,
        "in_sample": figures(samples, flags(final, samples)),
        "cross_validated_by_condition": by_condition(samples, cross),
        "threshold": round(final.threshold, 4),
        "targets_met": met,
    }
    return QualityModel(**{**final.__dict__, "calibration": report}), report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pbseg_training.calibrate_quality", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", type=Path, help="model file to calibrate")
    parser.add_argument("-o", "--output", required=True, type=Path, help="calibrated model file (may be MODEL)")
    parser.add_argument("--cases", type=int, default=8, help="held-out phantoms per joint (default 8)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help=f"phantom seed (default {HELD_OUT_SEED})")
    parser.add_argument("--voxel-scale", type=float, default=1.0, help="phantom voxel size factor (default 1)")
    parser.add_argument(
        "--generator", default=GENERATOR_VERSION, help=f"phantom generator version (default {GENERATOR_VERSION})"
    )
    parser.add_argument("--json", type=Path, help="also write the figures (and every bone's features) as JSON")
    parser.add_argument(
        "--accept-unmet-targets",
        action="store_true",
        help="write the calibrated file even when a target is not met (its calibration figures say so)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    loaded = load_model(args.model)
    samples = collect(loaded, args.cases, args.seed, args.voxel_scale, args.generator)
    settings = {
        "phantoms": f"{args.cases} per joint, seed {args.seed}, voxel scale {args.voxel_scale:g}, "
        f"generator {args.generator}",
        "conditions": list(dict.fromkeys(s.condition for s in samples)),
        "bones": len(samples),
    }
    model, report = calibrate(samples, settings)
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        details = {**report, "quality": model.to_json(), "samples": [s.__dict__ for s in samples]}
        args.json.write_text(json.dumps(details, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "cross_validated_by_condition"}, indent=1))
    for condition, row in report["cross_validated_by_condition"].items():
        print(f"  {condition:24s} {row}")
    if not report["targets_met"]:
        if not args.accept_unmet_targets:
            print(f"targets not met: {args.output} not written", file=sys.stderr)
            return 1
        print("targets not met: written anyway (--accept-unmet-targets)", file=sys.stderr)
    loaded.manifest.quality = model.to_json()
    resave_model(loaded, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
