#!/usr/bin/env bash
# Retrain the bundled model from scratch: phantom datasets (fixed seeds) -> full-scheme training ->
# model file in PediatricBoneSeg/PediatricBoneSegLib/resources/ (package data). Resumable: run it again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
CASES=${CASES:-20}
# Training seeds; the held-out evaluation (python -m pbseg_training.evaluate_model) uses others.
declare -A SEEDS=([ankle]=1100 [knee]=1200 [shoulder]=1300)
for joint in ankle knee shoulder; do
  if [ ! -f "data/bundled/$joint/dataset.json" ]; then
    "$BIN/pbseg" phantoms --joint "$joint" --n "$CASES" --seed "${SEEDS[$joint]}" -o "data/bundled/$joint"
  fi
done
"$BIN/pbseg-train" training/configs/bundled.toml -o runs/bundled --resume
cp runs/bundled/model.safetensors PediatricBoneSeg/PediatricBoneSegLib/resources/pediatric_bones.safetensors
"$BIN/pbseg" info PediatricBoneSeg/PediatricBoneSegLib/resources/pediatric_bones.safetensors
