"""Errors of the clinical measurements on fresh generator-2.0 phantoms, from a model's
segmentations and from the true label maps (the measurement method alone).

``python -m pbseg_training.measurement_errors [MODEL] [--cases N] [--seed S] [--voxel-scale V] [--json OUT]``

Per joint, N phantoms (held-out seeds) go through the same segmentation as ``pbseg segment`` with
the joint given; their clinical measurements (``pipeline.measurements``, with the per-bone
quality verdicts) are compared with the generator's recorded truth. Reported per measure: how many
cases were measured, how many were marked not measurable (and the commonest reason), the median and
90th percentile absolute error; growth-plate status accuracy over the long bones whose status was
given without a reason to check it, and apart over those marked check (a network's one-piece
"closed"); and the issue's targets, met or not.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from pbseg_training.phantoms import generate_phantom
from pbseg_training.phantoms.generator import case_seed
from PediatricBoneSegLib.atomic import write_text
from PediatricBoneSegLib.catalog import JOINT_KEYS
from PediatricBoneSegLib.network.modelfile import load_model
from PediatricBoneSegLib.options import SegmentOptions
from PediatricBoneSegLib.pipeline.inference import segment_image
from PediatricBoneSegLib.pipeline.measurements import measure
from PediatricBoneSegLib.resources import bundled_model_path

HELD_OUT_SEED = 95_000  # never used for training (model 1: 1100-1300, model 2: 2100-2300)
TARGETS = {  # measure -> (median, 90th percentile) absolute error limits; None: no limit
    "glenoid_version": (3.0, 6.0),
    "talocalcaneal_angle_sagittal": (3.0, 6.0),
    "talocalcaneal_angle_axial": (3.0, 6.0),
    "phha": (5.0, None),
    "tt_tg": (2.0, None),
    "sulcus_angle": (4.0, None),
}
STATUS_TARGET = 0.95


def evaluate(model_path: Path, cases: int, seed: int, voxel_scale: float) -> dict:
    loaded = load_model(model_path)
    errors: dict[str, dict[str, list[float]]] = {"model": defaultdict(list), "truth": defaultdict(list)}
    skipped: dict[str, dict[str, Counter]] = {"model": defaultdict(Counter), "truth": defaultdict(Counter)}
    status = {"model": Counter(), "truth": Counter()}
    checked = {"model": Counter(), "truth": Counter()}  # values given with a reason to check them
    for joint in JOINT_KEYS:
        for index in range(cases):
            phantom = generate_phantom(joint, case_seed(seed + JOINT_KEYS.index(joint), index), voxel_scale=voxel_scale)
            truth = phantom.parameters["truth"]
            result = segment_image(phantom.image, SegmentOptions(joint=joint), model=loaded)
            sources = {"model": measure(result.labels, joint, result.quality), "truth": measure(phantom.labels, joint)}
            for source, measured in sources.items():
                for m in measured:
                    if m.bone is not None:
                        if m.definition.key == "growth_plate_open" and m.bone in truth["physes"]:
                            expected = float(truth["physes"][m.bone]["open"])
                            outcome = "not given" if m.value is None else ("right" if m.value == expected else "wrong")
                            status[source][outcome + (" (check)" if m.status == "check" else "")] += 1
                        continue
                    if m.value is None:
                        skipped[source][m.key][m.reason.split(" (")[0]] += 1
                    else:
                        errors[source][m.key].append(abs(m.value - truth["measurements"][m.key]))
                        checked[source][m.key] += m.status == "check"
            print(f"{joint} {index}: {time.strftime('%H:%M:%S')}", flush=True)
    return {"errors": errors, "skipped": skipped, "status": status, "checked": checked}


def summary(outcome: dict) -> dict:
    table = {}
    for source in ("model", "truth"):
        rows = {}
        keys = sorted(set(outcome["errors"][source]) | set(outcome["skipped"][source]))
        for key in keys:
            values = np.asarray(outcome["errors"][source].get(key, []))
            reasons = outcome["skipped"][source].get(key, Counter())
            row = {
                "measured": len(values),
                "marked_check": int(outcome.get("checked", {}).get(source, Counter())[key]),
                "not_measurable": int(sum(reasons.values())),
                "commonest_reason": reasons.most_common(1)[0][0] if reasons else "",
                "median_abs_error": round(float(np.median(values)), 2) if len(values) else None,
                "p90_abs_error": round(float(np.percentile(values, 90)), 2) if len(values) else None,
            }
            if key in TARGETS and len(values):
                median, p90 = TARGETS[key]
                row["target_met"] = row["median_abs_error"] <= median and (p90 is None or row["p90_abs_error"] <= p90)
            rows[key] = row
        counts = outcome["status"][source]
        given = counts["right"] + counts["wrong"]
        marked = counts["right (check)"] + counts["wrong (check)"]
        rows["growth_plate_status"] = {
            "given": given,  # without a reason to check them
            "not_given": counts["not given"],
            "accuracy": round(counts["right"] / given, 3) if given else None,
            "target_met": bool(given) and counts["right"] / given >= STATUS_TARGET,
            "marked_check": marked,
            "marked_check_accuracy": round(counts["right (check)"] / marked, 3) if marked else None,
        }
        table[source] = rows
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=bundled_model_path())
    parser.add_argument("--cases", type=int, default=6, help="phantoms per joint")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--voxel-scale", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args(argv)
    table = summary(evaluate(args.model, args.cases, args.seed, args.voxel_scale))
    text = json.dumps(table, indent=2)
    print(text)
    if args.json:
        write_text(args.json, text + "\n")  # complete or not at all (creates the folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
