"""Choose the bone-metastasis post-processing (threshold, minimum lesion volume, hysteresis) on a validation cohort.

Computes each case's probability map once, then evaluates every (threshold, min volume, hysteresis seed) triple
with the study's slice-wise rules and prints a table; the triple with the best slice-wise F1 (ties: higher lesion
sensitivity) is the task spec's default. Never tune on the test cohort.

    python bench/bone_metastasis_postprocessing.py --model CKPT --val DIR [--out results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json

import SimpleITK as sitk

from oncolabel.cli.train import cohort_items
from oncolabel.evaluation import case_counts, evaluate_cases
from oncolabel.inference import SegmentationPredictor
from oncolabel.io import read_image
from oncolabel.lesions import bounding_box

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
MIN_MM3 = (20.0, 50.0, 100.0, 200.0)
SEEDS = (0.0, 0.8, 0.9, 0.95)  # hysteresis: a kept component reaches this probability somewhere (0: off)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--val", nargs="+", required=True)
    ap.add_argument("--out")
    args = ap.parse_args()
    base = SegmentationPredictor(args.model)
    cases = []
    for item in cohort_items(args.val):
        img = read_image(item["image"])
        prob = base.predict_probability(img)
        truth = sitk.GetArrayFromImage(read_image(item["label"])) > 0
        # every count is unchanged on the bounding box of (lowest threshold | truth): slices, components and
        # overlaps outside it are empty in both; the grid search then runs on a small crop
        box = bounding_box((prob >= min(THRESHOLDS)) | truth) or (slice(0, 1),) * 3
        cases.append((img, prob[box], truth[box]))
    rows = []
    for thr, mm3, seed in itertools.product(THRESHOLDS, MIN_MM3, SEEDS):
        if 0 < seed <= thr:
            continue
        base.spec = dataclasses.replace(base.spec, postprocessing=dataclasses.replace(
            base.spec.postprocessing, threshold=thr, min_lesion_mm3=mm3, seed_threshold=seed))
        ev = evaluate_cases([case_counts(base.postprocess(p, img), t, spacing=img.GetSpacing()) for img, p, t in cases],
                            n_boot=1)
        s, q = ev.slice_sensitivity.value or 0.0, ev.slice_ppv.value or 0.0
        rows.append({"threshold": thr, "min_lesion_mm3": mm3, "seed_threshold": seed, "slice_sensitivity": round(s, 4),
                     "slice_ppv": round(q, 4), "slice_f1": round(0 if s + q == 0 else 2 * s * q / (s + q), 4),
                     "lesion_sensitivity": ev.lesion_sensitivity.value,
                     "lesion_sensitivity_large": ev.lesion_sensitivity_large.value,
                     "fp_per_scan": ev.false_positives_per_scan, "dice": ev.dice_pooled})
    rows.sort(key=lambda r: (r["slice_f1"], r["lesion_sensitivity"] or 0), reverse=True)
    for r in rows[:8]:
        print(json.dumps(r))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"model": base.version, "val": args.val, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
