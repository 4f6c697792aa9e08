#!/usr/bin/env bash
# Retrain the bundled model from scratch: generator-2.0 phantom datasets (fixed seeds) -> full-scheme training ->
# model file in PediatricBoneSeg/PediatricBoneSegLib/resources/ (package data). Resumable: run it again after an interruption.
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
cp runs/bundled2/model.safetensors PediatricBoneSeg/PediatricBoneSegLib/resources/pediatric_bones.safetensors
"$BIN/pbseg" info PediatricBoneSeg/PediatricBoneSegLib/resources/pediatric_bones.safetensors
