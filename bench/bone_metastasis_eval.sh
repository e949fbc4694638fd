#!/usr/bin/env bash
# Accuracy of the shipped (or given) bone-metastasis model on a fresh phantom cohort (seed never used in training),
# through the public CLI: phantoms -> infer (one call per case) -> evaluate -> simulated reader study.
#   bash bench/bone_metastasis_eval.sh OUT_DIR [CKPT]
set -euo pipefail
out=${1:?usage: bench/bone_metastasis_eval.sh OUT_DIR [CKPT]}
model=${2:-}
mkdir -p "$out/pred"
[ -f "$out/cohort/manifest.json" ] || oncolabel phantoms bone-metastasis --n 24 --seed 303 --out "$out/cohort"
for f in "$out"/cohort/images/*.nii.gz; do
  oncolabel infer bone-metastasis "$f" "$out/pred/$(basename "$f")" ${model:+--model "$model"}
done
oncolabel evaluate bone-metastasis --pred "$out/pred" --truth "$out/cohort" --out "$out/report.json"
python "$(dirname "$0")/bone_metastasis_reader_study.py" --pred "$out/pred" --truth "$out/cohort"
