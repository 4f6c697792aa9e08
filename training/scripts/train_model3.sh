#!/usr/bin/env bash
# Train candidate model 3: model 2 (training/results/model2/pediatric_bones_2.safetensors) trained on, on
# 60 generator-2.0 phantoms per joint. Resumable: run it again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
# model 2's training seeds: the first 40 cases are model 2's own; the held-out evaluation uses others
declare -A SEEDS=([ankle]=2100 [knee]=2200 [shoulder]=2300)
for joint in ankle knee shoulder; do
  if [ ! -f "data/bundled3/$joint/dataset.json" ]; then
    "$BIN/pbseg" phantoms --joint "$joint" --n 60 --seed "${SEEDS[$joint]}" -o "data/bundled3/$joint"
  fi
done
"$BIN/pbseg-train" training/configs/bundled3.toml -o runs/bundled3 --resume
mkdir -p training/results/model3
cp runs/bundled3/model.safetensors training/results/model3/pediatric_bones_3.safetensors
"$BIN/pbseg" info training/results/model3/pediatric_bones_3.safetensors
