"""Experiment: run the bone-metastasis network only where there is bone, and what it costs in accuracy.

Metastases of this task lie in bone. :class:`oncolabel.inference.SegmentationPredictor` can run the network, batch
by batch, only on the in-plane box of the bone in those slices (pixels above ``bone_roi_hu``, 200 HU, in any slice
or channel of the batch) grown by ``bone_roi_margin_mm``, instead of the whole body box (post-processing fields of
the task spec; probability 0 outside, a batch without bone is skipped). The network then sees less context (its
image-level pooling included), so the result is not identical: this script measures it. For each labelled cohort
case (cases the network never trained on) and each margin (``none`` = the whole body box), the shipped predictor
with that margin, then the pooled evaluation of ``oncolabel evaluate`` and the mean inference time per case.

    python bench/bone_metastasis_roi.py --cohort C1 [C2 ...] --margins none 15 25 35 [--model CKPT] \\
        [--threads 2] [--out bench/results/bone_metastasis_roi.json]

Research use only (synthetic phantoms).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import SimpleITK as sitk
import torch

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.cli.train import cohort_items
from oncolabel.evaluation import case_counts, evaluate_cases
from oncolabel.inference import SegmentationPredictor
from oncolabel.io import read_image
from oncolabel.provenance import package_versions
from oncolabel.tasks import get_task


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def _margin(text: str) -> float | None:
    return None if text == "none" else float(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", nargs="+", required=True, help="labelled phantom cohorts (images/, labels/)")
    ap.add_argument("--margins", nargs="+", type=_margin, default=[None, 15.0, 25.0, 35.0],
                    help="bone ROI margins in mm ('none': the whole body box)")
    ap.add_argument("--model", help="checkpoint (default: the shipped model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--first", type=int, help="only the first N cases")
    ap.add_argument("--no-filter", action="store_true", help="without the checkpoint's false-positive filter")
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    spec = get_task("bone_metastasis")
    base = SegmentationPredictor(a.model)
    predictors = {m: SegmentationPredictor(base.checkpoint, task=dataclasses.replace(
        spec, postprocessing=dataclasses.replace(spec.postprocessing, bone_roi_margin_mm=m,
                                                 component_filter=not a.no_filter)))
        for m in a.margins}
    items = cohort_items(a.cohort)[: a.first]
    counts: dict[str, list] = {str(m): [] for m in a.margins}
    seconds: dict[str, list[float]] = {str(m): [] for m in a.margins}
    for i, item in enumerate(items):
        image = read_image(item["image"])
        truth = sitk.GetArrayFromImage(read_image(item["label"])) > 0
        if i == 0:
            for p in predictors.values():  # warm-up
                p.predict(image)
        for m, p in predictors.items():
            t = time.perf_counter()
            mask = sitk.GetArrayFromImage(p.predict(image).label) > 0
            seconds[str(m)].append(time.perf_counter() - t)
            counts[str(m)].append(case_counts(mask, truth, spacing=image.GetSpacing(), case_id=item["image"]))
        if (i + 1) % 20 == 0:
            print(f"{i + 1} / {len(items)} cases", flush=True)
    rows = {}
    for m in a.margins:
        ev = evaluate_cases(counts[str(m)], n_boot=200)
        rows[str(m)] = {"margin_mm": m, "seconds_per_case": round(float(np.mean(seconds[str(m)])), 3),
                        "slice_sensitivity": _round(ev.slice_sensitivity.value),
                        "slice_ppv": _round(ev.slice_ppv.value),
                        "lesion_sensitivity": _round(ev.lesion_sensitivity.value),
                        "lesion_sensitivity_10mm": _round(ev.lesion_sensitivity_large.value),
                        "fp_per_scan": _round(ev.false_positives_per_scan, 3), "dice": _round(ev.dice_pooled)}
        print(f"margin {str(m):5s} " + "  ".join(f"{k} {v}" for k, v in rows[str(m)].items() if k != "margin_mm"),
              flush=True)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"notice": RESEARCH_USE_ONLY, "command": " ".join(sys.argv), "model": base.version,
                       "component_filter": not a.no_filter,
                       "precision": base.precision, "threads": a.threads, "cases": len(items),
                       "cohorts": a.cohort, "rows": rows, "software": package_versions(("torch", "numpy"))},
                      fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
