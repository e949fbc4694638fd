"""Experiment: the same bone-metastasis network run at other working pixel sizes.

The task's preprocessing resamples every slice to ``spacing_mm`` (1.25 mm) before the network; the network is
trained with in-plane zoom augmentation over about 0.7-1.7 mm pixels, so it can be run at other sizes. For each
``--spacing`` this runs the model (its checkpoint's preprocessing record replaced in memory; nothing is written) on
labelled cohorts with the spec's candidate rule and no component filter (the filter is fitted at one resolution),
and prints the pooled evaluation and the time.

    python bench/bone_metastasis_spacing.py --model M --cohort val20 fpr406 --first 80 --spacing 1.25 0.8

Research use only (synthetic phantoms).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import SimpleITK as sitk
import torch

from oncolabel.checkpoint import load_checkpoint
from oncolabel.cli.train import cohort_items
from oncolabel.evaluation import case_counts, evaluate_cases
from oncolabel.inference import SegmentationPredictor, default_checkpoint_path
from oncolabel.io import read_image
from oncolabel.tasks import get_task
from oncolabel.tasks.base import spec_variant


def predictor_at_spacing(model: str | None, spacing_mm: float, *, component_filter: bool = False,
                         threads: int = 2, precision: str = "auto") -> SegmentationPredictor:
    """The bone-metastasis predictor of ``model`` (default: shipped) run at ``spacing_mm`` working pixels."""
    torch.set_num_threads(threads)
    spec = get_task("bone_metastasis")
    ck = load_checkpoint(model or default_checkpoint_path(spec), task=spec.name)
    variant = dataclasses.replace(spec_variant(spec, preprocessing={"spacing_mm": spacing_mm}),
                                  postprocessing=dataclasses.replace(spec.postprocessing,
                                                                     component_filter=component_filter))
    return SegmentationPredictor(dataclasses.replace(ck, preprocessing=variant.preprocessing.to_dict()), task=variant,
                                 precision=precision)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint (default: the shipped model)")
    ap.add_argument("--cohort", nargs="+", required=True, help="labelled cohort folders the model never trained on")
    ap.add_argument("--first", type=int, help="only the first N cases (over all cohorts, in order)")
    ap.add_argument("--spacing", type=float, nargs="+", default=[1.25, 0.8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    a = ap.parse_args(argv)
    items = cohort_items(a.cohort)[:a.first]
    for spacing in a.spacing:
        predictor = predictor_at_spacing(a.model, spacing, threads=a.threads, precision=a.precision)
        counts, start = [], time.time()
        for item in items:
            image, label = read_image(item["image"]), read_image(item["label"])
            mask = predictor.postprocess(predictor.predict_probability(image), image)
            counts.append(case_counts(mask, sitk.GetArrayFromImage(label) > 0, spacing=image.GetSpacing()))
        pooled = evaluate_cases(counts, n_boot=1).to_dict()["pooled"]
        row = {"spacing_mm": spacing, "precision": predictor.precision, "cases": len(items), "seconds": round(time.time() - start, 1),
               **{k: round(pooled[k]["value"], 3) for k in ("slice_sensitivity", "slice_ppv", "lesion_sensitivity",
                                                             "lesion_sensitivity_large")},
               "fp_per_scan": round(pooled["false_positives_per_scan"], 2), "dice": round(pooled["dice_pooled"], 3)}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
