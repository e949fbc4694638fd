#!/usr/bin/env bash
# Accuracy of the shipped (or given) bone-metastasis model on a fresh phantom cohort (seed never used in training),
# through the public CLI: phantoms -> infer (one call per case) -> evaluate -> simulated reader study.
#   bash bench/bone_metastasis_eval.sh OUT_DIR [CKPT] [SEED] [N]
# SEED (default 303, the README's test cohort) and N (default 24) choose the cohort; a cohort already in
# OUT_DIR/cohort is used as it is.
set -euo pipefail
out=${1:?usage: bench/bone_metastasis_eval.sh OUT_DIR [CKPT] [SEED] [N]}
model=${2:-}
seed=${3:-303}
n=${4:-24}
mkdir -p "$out/pred"
[ -f "$out/cohort/manifest.json" ] || oncolabel phantoms bone-metastasis --n "$n" --seed "$seed" --out "$out/cohort"
for f in "$out"/cohort/images/*.nii.gz; do
  oncolabel infer bone-metastasis "$f" "$out/pred/$(basename "$f")" ${model:+--model "$model"}
done
oncolabel evaluate bone-metastasis --pred "$out/pred" --truth "$out/cohort" --out "$out/report.json"
python "$(dirname "$0")/bone_metastasis_reader_study.py" --pred "$out/pred" --truth "$out/cohort"
