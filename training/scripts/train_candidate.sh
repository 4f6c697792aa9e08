#!/usr/bin/env bash
# Train a bundled-model candidate that continues an exported model on 60 generator-2.0 phantoms per
# joint (data/bundled3: model 2's 40 training cases per joint, same seeds, and 20 more; the held-out
# evaluation uses other seeds). Resumable: run it again after an interruption.
#   bash training/scripts/train_candidate.sh 3          # model 3 (config bundled3.toml)
#   bash training/scripts/train_candidate.sh 4          # model 4 (config bundled4.toml)
#   bash training/scripts/train_candidate.sh 5          # model 5 (config bundled5.toml)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
MODEL=${1:?give the candidate number: 3, 4 or 5}
declare -A SEEDS=([ankle]=2100 [knee]=2200 [shoulder]=2300)
for joint in ankle knee shoulder; do
  if [ ! -f "data/bundled3/$joint/dataset.json" ]; then
    "$BIN/pbseg" phantoms --joint "$joint" --n 60 --seed "${SEEDS[$joint]}" -o "data/bundled3/$joint"
  fi
done
"$BIN/pbseg-train" "training/configs/bundled$MODEL.toml" -o "runs/bundled$MODEL" --resume
mkdir -p "training/results/model$MODEL"
cp "runs/bundled$MODEL/model.safetensors" "training/results/model$MODEL/pediatric_bones_$MODEL.safetensors"
"$BIN/pbseg" info "training/results/model$MODEL/pediatric_bones_$MODEL.safetensors"
