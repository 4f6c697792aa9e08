"""Does label-to-image synthesis make a network contrast-agnostic? A small controlled study.

``python -m pbseg_training.permutation_study -o OUTDIR [--steps N] [--cases N]``

Two tiny single-joint (knee) networks are trained on the same phantoms, all of ONE protocol
family (PD fat-suppressed), with the same seed and steps: one on the images alone, one with half
of its slices replaced by SynthSeg-style random-contrast images of their tissue maps. Both then
segment held-out knees rendered twice: in the training protocol, and with the tissue signals
permuted (the same case's signal values handed to other tissues: a contrast neither saw).
Reported: mean Dice per bone for each (model, test contrast), as JSON and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pbseg_training.config import DatasetSpec, TrainingConfig
from pbseg_training.dataset import write_raw_dataset
from pbseg_training.metrics import image_metrics
from pbseg_training.phantoms import case_seed, generate_phantom
from pbseg_training.phantoms.appearance import TISSUES
from pbseg_training.trainer import train
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.network.modelfile import load_model
from PediatricBoneSegLib.options import SegmentOptions
from PediatricBoneSegLib.pipeline.inference import segment_image

JOINT, FAMILY = "knee", "PD_FS"
IMAGENET_WEIGHTS = Path(__file__).parents[1] / "weights" / "mobilenet_v2_imagenet.safetensors"
TRAIN_SEED, TEST_SEED = 7100, 97100


def permuted_contrast(signal: dict[str, float], seed: int) -> dict[str, float]:
    """The same signal values handed to other tissues (air stays dark), as a derangement of the
    tissues that matter most: bone marrow, fat, muscle, cartilage and fluid all change."""
    rng = np.random.default_rng(seed)
    tissues = [t for t in TISSUES if t != "air"]
    while True:
        order = rng.permutation(len(tissues))
        if all(order[i] != i for i in range(len(tissues))):
            break
    values = [signal[t] for t in tissues]
    return {"air": 0.0, **{t: values[order[i]] for i, t in enumerate(tissues)}}


def write_training_data(out_dir: Path, cases: int, voxel_scale: float) -> Path:
    def items():
        for index in range(cases):
            p = generate_phantom(JOINT, case_seed(TRAIN_SEED, index), voxel_scale=voxel_scale, protocol=FAMILY)
            yield f"{JOINT}_{index:03d}", p.image, p.labels, p.tissues, p.parameters

    return write_raw_dataset(out_dir, JOINT, items(), cases, extra={"generator_version": "2.0", "protocol": FAMILY})


def run_study(out_dir: Path, steps: int, cases: int, test_cases: int, voxel_scale: float = 2.0) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "data"
    if not data.exists():
        write_training_data(data, cases, voxel_scale)
    base = TrainingConfig(
        name="permutation",
        scheme="individual",
        target_joint=JOINT,
        datasets=(DatasetSpec(str(data)),),
        imagenet_weights=str(IMAGENET_WEIGHTS),
        decoder_channels=(32, 24, 16, 16, 8),
        input_size=128,
        steps=steps,
        batch_per_domain=8,
        warmup_steps=20,
        threads=1,
        checkpoint_every=100,
    )
    models = {}
    for name, probability in (("images only", 0.0), ("with synthesis", 0.5)):
        run = out_dir / name.replace(" ", "_")
        path = run / "model.safetensors"
        if not path.exists():
            train(base.with_overrides(synthesis_probability=probability), run, resume=True, show_progress=False)
        models[name] = load_model(path)
    bones = [bone.key for bone in get_joint(JOINT).bones]
    dice: dict[str, dict[str, dict[str, list[float]]]] = {
        model: {test: {bone: [] for bone in bones} for test in ("training protocol", "permuted")} for model in models
    }
    for index in range(test_cases):
        seed = case_seed(TEST_SEED, index)
        plain = generate_phantom(JOINT, seed, voxel_scale=voxel_scale, protocol=FAMILY)
        contrast = permuted_contrast(plain.parameters["signal"], seed)
        permuted = generate_phantom(JOINT, seed, voxel_scale=voxel_scale, protocol=FAMILY, contrast=contrast)
        for test, phantom in (("training protocol", plain), ("permuted", permuted)):
            for model_name, loaded in models.items():
                result = segment_image(phantom.image, SegmentOptions(joint=JOINT), model=loaded)
                present = np.unique(sitk.GetArrayViewFromImage(phantom.labels))
                for bone, values in image_metrics(result.labels, phantom.labels, JOINT).items():
                    if get_joint(JOINT).label_of(bone) in present:  # a bone outside the field of view is not scored
                        dice[model_name][test][bone].append(values["dice"])
    means = {
        model: {test: {bone: float(np.mean(v)) for bone, v in per_bone.items()} for test, per_bone in tests.items()}
        for model, tests in dice.items()
    }
    results = {"joint": JOINT, "protocol": FAMILY, "steps": steps, "cases": cases, "test_cases": test_cases}
    results |= {"voxel_scale": voxel_scale, "mean_dice": means, "dice": dice}
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return results


def markdown(results: dict) -> str:
    bones = list(next(iter(next(iter(results["mean_dice"].values())).values())))
    lines = ["| model | test contrast | " + " | ".join(bones) + " | mean |", "|---" * (len(bones) + 3) + "|"]
    for model, tests in results["mean_dice"].items():
        for test, per_bone in tests.items():
            cells = " | ".join(f"{100 * per_bone[b]:.1f}" for b in bones)
            lines.append(f"| {model} | {test} | {cells} | {100 * np.mean(list(per_bone.values())):.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pbseg_training.permutation_study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="study folder (resumable)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--cases", type=int, default=8, help="training phantoms")
    parser.add_argument("--test-cases", type=int, default=6)
    parser.add_argument("--voxel-scale", type=float, default=2.0)
    args = parser.parse_args(argv)
    results = run_study(args.output, args.steps, args.cases, args.test_cases, args.voxel_scale)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
