"""Experiment: what the false-positive component filter and the growth into adjacent slices do for a model.

For every case of the given labelled cohorts (cases the model never trained on) the model's probability map is
computed once (kept, cropped, under ``--cache``), then: the spec's candidate components; a component filter
(:class:`oncolabel.candidates.ComponentFilter`) scored out-of-fold (5 case-grouped folds: no case is scored by a
filter that saw it); for each filter threshold (none = the spec's rule alone) and growth of 0-2 slices
(:func:`oncolabel.candidates.grow_along_z`), the pooled evaluation of ``oncolabel evaluate`` (slice sensitivity /
PPV, lesion sensitivity, >= 10 mm, false positives per scan, Dice). ``--rules`` repeats this for other candidate
rules (threshold, seed threshold, minimum size). One JSON file with every row.

``--checkpoint-filter`` scores the components with the checkpoint's own fitted filter instead (for choosing an
operating point of a finished model on cohorts its filter never saw); ``--choose MIN_PPV,MIN_LARGE`` then records
the row with the highest slice sensitivity among those with slice PPV >= MIN_PPV and lesion sensitivity >= 10 mm >=
MIN_LARGE (ties within 0.005 sensitivity: the higher PPV).

    python bench/bone_metastasis_candidates.py --model M --cohort train3 fpr404 val20 --cache /tmp/cache \\
        --out bench/results/bone_metastasis_candidates.json

Research use only (synthetic phantoms).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.candidates import RING_MM, candidate_mask, component_table, grow_along_z, out_of_fold_scores
from oncolabel.cli.train import cohort_items
from oncolabel.evaluation import case_counts, evaluate_cases
from oncolabel.inference import SegmentationPredictor
from oncolabel.io import read_image
from oncolabel.lesions import bounding_box, label_components
from oncolabel.provenance import package_versions
from oncolabel.stats import roc_auc


def cached_case(predictor: SegmentationPredictor, item: dict, cache: Path) -> dict:
    """Probability, CT and truth cropped to where anything is (probability >= 0.1 or truth), padded."""
    path = cache / (Path(item["image"]).parent.parent.name + "__" +
                                        Path(item["image"]).name.replace(".nii.gz", ".npz"))
    if not path.exists():
        image, label = read_image(item["image"]), read_image(item["label"])
        truth = sitk.GetArrayFromImage(label) > 0
        prob = predictor.predict_probability(image)
        box = bounding_box((prob >= 0.1) | truth) or tuple(slice(0, 1) for _ in range(3))
        pad = [int(np.ceil(RING_MM / s)) + 6 for s in image.GetSpacing()[::-1]]
        box = tuple(slice(max(0, b.start - q), min(n, b.stop + q)) for b, q, n in zip(box, pad, prob.shape))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, prob=prob[box].astype(np.float16), truth=truth[box],
                            hu=sitk.GetArrayViewFromImage(image)[box].astype(np.int16),
                            spacing=np.array(image.GetSpacing()))
    d = np.load(path)
    return {"id": path.stem, "prob": d["prob"].astype(np.float32), "hu": d["hu"], "truth": d["truth"],
            "spacing": tuple(float(s) for s in d["spacing"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint (default: the shipped model)")
    ap.add_argument("--cohort", nargs="+", required=True, help="labelled cohort folders the model never trained on")
    ap.add_argument("--cache", type=Path, required=True, help="folder for the cropped probability maps")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--thresholds", type=float, nargs="*", default=[0.05, 0.1, 0.15, 0.2, 0.3])
    ap.add_argument("--grow", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--rules", nargs="*", default=[], metavar="T,SEED,MM3",
                    help="candidate rules (threshold, seed threshold, minimum mm^3); default: the spec's")
    ap.add_argument("--checkpoint-filter", action="store_true",
                    help="score components with the checkpoint's fitted filter, not one refitted out of fold")
    ap.add_argument("--choose", metavar="MIN_PPV,MIN_LARGE",
                    help="record the most sensitive row with slice PPV and lesions >= 10 mm at least these")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spacing", type=float, help="working pixel size (mm) instead of the task's (experiment)")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--bone-roi-margin", metavar="MM|none",
                    help="bone-region margin instead of the spec's bone_roi_margin_mm ('none': the whole body box)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    min_ppv, min_large = (float(v) for v in a.choose.split(",")) if a.choose else (None, None)
    if a.spacing:
        from bone_metastasis_spacing import predictor_at_spacing  # this folder's sibling script

        predictor = predictor_at_spacing(a.model, a.spacing, threads=a.threads, precision=a.precision)
    else:
        predictor = SegmentationPredictor(a.model, precision=a.precision)
    if a.bone_roi_margin is not None:
        spec = predictor.spec
        margin = None if a.bone_roi_margin == "none" else float(a.bone_roi_margin)
        predictor = SegmentationPredictor(predictor.checkpoint, precision=a.precision, task=dataclasses.replace(
            spec, postprocessing=dataclasses.replace(spec.postprocessing, bone_roi_margin_mm=margin)))
    post = predictor.spec.postprocessing
    if a.checkpoint_filter and predictor.component_filter is None:
        raise SystemExit("--checkpoint-filter: the checkpoint holds no fitted component filter")
    rules = a.rules or [f"{post.threshold},{post.seed_threshold},{post.min_lesion_mm3}"]
    start = time.time()
    cache = a.cache / (predictor.version + (f"_{a.spacing:g}mm" if a.spacing else "")
                       + ("_bf16" if predictor.precision == "bf16" else "")
                       + f"_roi{predictor.spec.postprocessing.bone_roi_margin_mm}mm")
    cases = [cached_case(predictor, item, cache) for item in cohort_items(a.cohort)]
    t_cases = time.time() - start
    rows, aucs = [], {}
    for rule in rules:
        threshold, seed_threshold, min_mm3 = (float(v) for v in rule.split(","))
        for c in cases:
            mask = candidate_mask(c["prob"], threshold=threshold, seed_threshold=seed_threshold,
                                  min_voxels=int(np.ceil(min_mm3 / np.prod(c["spacing"]))))
            c["labels"], _ = label_components(mask)
            c["X"], c["y"] = component_table(c["prob"], c["hu"], c["labels"], c["truth"], c["spacing"][::-1])
        y = np.concatenate([c["y"] for c in cases])
        if a.checkpoint_filter:
            oof = predictor.component_filter.predict_proba(np.concatenate([c["X"] for c in cases]))[:, 1]
        else:
            oof = out_of_fold_scores([(c["X"], c["y"]) for c in cases], folds=5, seed=0)
        if np.isnan(oof).any() or len(np.unique(y)) < 2:
            raise SystemExit(f"rule {rule}: too few cases or components to score every one")
        aucs[rule] = {"filter_auc" if a.checkpoint_filter else "filter_cv_auc": round(float(roc_auc(y, oof)), 4),
                      "n_components": int(len(y)), "n_true": int(y.sum())}
        scores = np.split(oof, np.cumsum([len(c["y"]) for c in cases])[:-1])
        for thr in [None, *a.thresholds]:
            for steps in a.grow:
                counts = []
                for c, s in zip(cases, scores):
                    keep = np.ones(len(c["y"]), bool) if thr is None else s >= thr
                    m = np.concatenate([[False], keep])[c["labels"]]
                    if steps:
                        m = grow_along_z(m, c["hu"], steps=steps)
                    counts.append(case_counts(m, c["truth"], spacing=c["spacing"], case_id=c["id"]))
                p = evaluate_cases(counts, n_boot=1).to_dict()["pooled"]
                row = {"rule": rule, "filter_threshold": thr, "grow_slices": steps,
                       **{k: round(p[k]["value"], 4) for k in ("slice_sensitivity", "slice_ppv", "lesion_sensitivity",
                                                                "lesion_sensitivity_large")},
                       "fp_per_scan": round(p["false_positives_per_scan"], 3), "dice": round(p["dice_pooled"], 4)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    chosen = None
    if a.choose:
        ok = [r for r in rows if r["slice_ppv"] >= min_ppv and r["lesion_sensitivity_large"] >= min_large]
        if ok:
            best = max(r["slice_sensitivity"] for r in ok)
            chosen = max((r for r in ok if r["slice_sensitivity"] >= best - 0.005), key=lambda r: r["slice_ppv"])
        print(f"chosen (slice PPV >= {min_ppv}, lesions >= 10 mm >= {min_large}): {json.dumps(chosen)}")
    report = {"notice": RESEARCH_USE_ONLY, "command": " ".join(sys.argv), "model_version": predictor.version,
              "spacing_mm": predictor.spec.preprocessing.spacing_mm, "precision": predictor.precision,
              "cohorts": a.cohort, "n_cases": len(cases), "rules": aucs, "postprocessing": post.to_dict(),
              "seconds_cases": round(t_cases, 1), "rows": rows,
              "filter": "checkpoint" if a.checkpoint_filter else "out of fold",
              "choose": {"min_slice_ppv": min_ppv, "min_lesion_sensitivity_large": min_large, "chosen": chosen},
              "software": package_versions(("torch", "numpy", "scikit-learn"))}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1))
    print(f"{len(cases)} cases; filter AUC per rule {aucs}; written {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
