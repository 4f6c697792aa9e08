#!/usr/bin/env bash
# The CUDA path on a machine with an NVIDIA GPU, in three steps (about 5 minutes):
#   1. the inference and acceleration tests with --device auto resolving to CUDA (labels on the
#      physical truth, auto device/precision, bf16 and fp16 against fp32 on a trained phantom);
#   2. bf16 and fp16 against fp32 with the bundled model on the benchmark's standard knee
#      (384x384x160): Dice per bone (target >= 0.99) and the network stage's seconds, on the GPU;
#   3. benchmarks/inference.py --segment-only: the whole pbseg segment, cli_wall_s and
#      batch_cases_per_min, now on the GPU.
# Needs a CUDA build of PyTorch in the environment (constraints.txt pins the CPU wheel: install
# the same version from https://download.pytorch.org/whl/cu128 first). Exits 1 at the first failure.
#
#     bash benchmarks/gpu_check.sh            # PYTHON=... to use another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONUTF8=1

"$PYTHON" - <<'EOF'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(f"gpu_check: PyTorch {torch.__version__} sees no CUDA GPU (a CPU-only build, or no driver)")
native = torch.cuda.is_bf16_supported(including_emulation=False)
print(f"gpu_check: {torch.cuda.get_device_name(0)}, PyTorch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"auto precision {'bf16' if native else 'fp16'}")
EOF

echo "== 1. inference tests on CUDA"
"$PYTHON" -m pytest -q -p no:cacheprovider Testing/test_inference.py Testing/test_acceleration.py

echo "== 2. bf16 / fp16 against fp32, bundled model, standard knee, on the GPU"
"$PYTHON" - <<'EOF'
import sys
import time

import numpy as np
import SimpleITK as sitk
import torch

sys.path.insert(0, "benchmarks")
from inference import STANDARD, knee_volume  # noqa: E402

from PediatricBoneSegLib.catalog import get_joint  # noqa: E402
from PediatricBoneSegLib.options import SegmentOptions  # noqa: E402
from PediatricBoneSegLib.pipeline.inference import get_model, segment_image  # noqa: E402

image, model = knee_volume(*STANDARD), get_model()
labels, seconds = {}, {}
for precision in ("fp32", "bf16", "fp16", "fp32"):  # fp32 twice: the first run warms the GPU up
    torch.cuda.synchronize()
    result = segment_image(image, SegmentOptions(joint="knee", device="cuda", precision=precision), model=model)
    labels[precision], seconds[precision] = sitk.GetArrayFromImage(result.labels), result.timings["network"]
    assert result.device.startswith("cuda") and result.precision == precision
failed = []
for precision in ("bf16", "fp16"):
    dices = {}
    for value, bone in enumerate(get_joint("knee").bones, start=1):
        a, b = labels[precision] == value, labels["fp32"] == value
        total = int(a.sum() + b.sum())
        dices[bone.key] = 1.0 if total == 0 else 2 * int((a & b).sum()) / total
    print(f"{precision}: network {seconds[precision]:.3f} s (fp32 {seconds['fp32']:.3f} s); Dice vs fp32 "
          + ", ".join(f"{key} {dice:.4f}" for key, dice in dices.items()))
    failed += [f"{precision} {key} {dice:.4f}" for key, dice in dices.items() if dice < 0.99]
if failed:
    sys.exit(f"gpu_check: Dice below 0.99 against fp32: {', '.join(failed)}")
EOF

echo "== 3. benchmark (whole command on the GPU)"
"$PYTHON" benchmarks/inference.py --segment-only
