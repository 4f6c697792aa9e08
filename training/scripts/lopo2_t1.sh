#!/usr/bin/env bash
# Leave-one-protocol-out study with model 5's recipe from ImageNet (training/configs/lopo2_t1.toml):
# 60 phantoms per joint with no T1 or T1 fat-sat case (the seeds of model 5's data), a training,
# then the evaluation on T1 and T1 fat-sat cases of the held-out seeds. Resumable.
#   bash training/scripts/lopo2_t1.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
declare -A SEEDS=([ankle]=2100 [knee]=2200 [shoulder]=2300)
for joint in ankle knee shoulder; do
  if [ ! -f "data/lopo2_t1/$joint/dataset.json" ]; then
    "$BIN/pbseg" phantoms --joint "$joint" --n 60 --seed "${SEEDS[$joint]}" --exclude-protocols T1 T1_FS \
      -o "data/lopo2_t1/$joint"
  fi
done
"$BIN/pbseg-train" training/configs/lopo2_t1.toml -o runs/lopo2_t1 --resume
mkdir -p training/results/lopo2_t1
"$BIN/python" -m pbseg_training.evaluate_model runs/lopo2_t1/model.safetensors --protocols T1 T1_FS --cases 2 \
  --json training/results/lopo2_t1/no_t1_model.json > training/results/lopo2_t1/no_t1_model.md
