#!/usr/bin/env bash
# Train a bundled-model candidate that continues an exported model on generator-2.0 phantoms: 60 per
# joint for models 3-5 (data/bundled3: model 2's 40 training cases per joint, same seeds, and 20
# more), 90 for model 6 (data/bundled6: the same seeds, so its first 60 are data/bundled3's); the
# held-out evaluation uses other seeds. Resumable: run it again after an interruption.
#   bash training/scripts/train_candidate.sh 3          # model 3 (config bundled3.toml)
#   bash training/scripts/train_candidate.sh 4          # model 4 (config bundled4.toml)
#   bash training/scripts/train_candidate.sh 5          # model 5 (config bundled5.toml)
#   bash training/scripts/train_candidate.sh 6          # model 6 (config bundled6.toml)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
MODEL=${1:?give the candidate number: 3, 4, 5 or 6}
if [ "$MODEL" -ge 6 ]; then DATA=data/bundled6 CASES=90; else DATA=data/bundled3 CASES=60; fi
declare -A SEEDS=([ankle]=2100 [knee]=2200 [shoulder]=2300)
for joint in ankle knee shoulder; do
  if [ ! -f "$DATA/$joint/dataset.json" ]; then
    "$BIN/pbseg" phantoms --joint "$joint" --n "$CASES" --seed "${SEEDS[$joint]}" -o "$DATA/$joint"
  fi
done
"$BIN/pbseg-train" "training/configs/bundled$MODEL.toml" -o "runs/bundled$MODEL" --resume
mkdir -p "training/results/model$MODEL"
cp "runs/bundled$MODEL/model.safetensors" "training/results/model$MODEL/pediatric_bones_$MODEL.safetensors"
"$BIN/pbseg" info "training/results/model$MODEL/pediatric_bones_$MODEL.safetensors"
