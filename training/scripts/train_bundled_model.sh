#!/usr/bin/env bash
# Train the candidate model 2 from scratch: generator-2.0 phantom datasets (fixed seeds) -> full-scheme training ->
# candidate model file in training/results/model2/. Resumable: run it again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
CASES=${CASES:-40}
# Training seeds; the held-out evaluation (python -m pbseg_training.evaluate_model) uses others.
declare -A SEEDS=([ankle]=2100 [knee]=2200 [shoulder]=2300)
for joint in ankle knee shoulder; do
  if [ ! -f "data/bundled2/$joint/dataset.json" ]; then
    "$BIN/pbseg" phantoms --joint "$joint" --n "$CASES" --seed "${SEEDS[$joint]}" -o "data/bundled2/$joint"
  fi
done
"$BIN/pbseg-train" training/configs/bundled.toml -o runs/bundled2 --resume
# Model 2 was then trained on to 8000 steps: from step 4000 the learning rate follows the 8000-step polynomial
# schedule (power 0.9; it rises again at the resume, to its mid-schedule value).
"$BIN/pbseg-train" training/configs/bundled.toml -o runs/bundled2 --resume --steps 8000
# Its export fits the joint classifier on the training volumes (pbseg_training.detection_fit).
cp runs/bundled2/model.safetensors training/results/model2/pediatric_bones_2.safetensors
"$BIN/pbseg" info training/results/model2/pediatric_bones_2.safetensors
