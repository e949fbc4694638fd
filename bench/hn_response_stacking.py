"""Experiment: do noise-referenced image measurements add to the H&N deep-feature model?

Takes the out-of-fold outputs of a cross-validation run of ``bench/classifiers_cv.py --task hn_response`` (its
``--out`` JSON: per case the fold, the calibrated deep-model probability and the radiomics model's), measures the four
tumour traits on the same cases with :mod:`oncolabel.features.tumour` (CT + tumour mask only: volume, necrotic
fraction, viable enhancement, heterogeneity with a noise reference measured in the patient's own homogeneous
muscle), and fits standardised logistic regressions on the *same folds*: measurements alone, deep output
+ measurements, radiomics output + measurements. Prints and writes the cross-validated AUCs next to the ceiling.

    python bench/hn_response_stacking.py --cv bench/results/hn_response_cv_tuned_setting.json --cohort /tmp/hn/hn300 \\
        --out bench/results/hn_response_stacking.json

Research use only (synthetic phantoms). The deep and radiomics inputs are out-of-fold already; the stacking
regression is fitted on the training folds only, so no case is scored by a model that saw it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.features.tumour import MEASUREMENT_NAMES as TRAITS
from oncolabel.features.tumour import measure_tumour
from oncolabel.io import read_image
from oncolabel.phantoms.io import read_classification_cohort
from oncolabel.provenance import package_versions
from oncolabel.stats import roc_auc


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))[:, None]


def same_fold_cv_auc(x: np.ndarray, y: np.ndarray, fold: np.ndarray, *, c: float = 1.0) -> float:
    """AUC of a standardised L2 logistic regression scored out of fold on the given folds."""
    out = np.zeros(len(y))
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x[train], y[train])
        out[test] = model.predict_proba(x[test])[:, 1]
    return round(float(roc_auc(y, out)), 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cv", required=True, help="JSON written by bench/classifiers_cv.py --task hn_response --out")
    ap.add_argument("--cohort", required=True, help="the cohort folder that CV ran on")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    cv = json.loads(Path(a.cv).read_text())
    oof = cv["out_of_fold"]
    items = {it["case_id"]: it for it in read_classification_cohort(a.cohort)}
    missing = [c for c in oof["case_id"] if c not in items]
    if missing:
        raise SystemExit(f"{len(missing)} CV cases are not in {a.cohort} (e.g. {missing[0]}): wrong cohort")
    y, fold = np.asarray(oof["y"]), np.asarray(oof["fold"])
    measured = (measure_tumour(read_image(items[c]["image"]), read_image(items[c]["mask"])) for c in oof["case_id"])
    meas = np.array([[m[t] for t in TRAITS] for m in measured])
    deep, radiomics = _logit(oof["calibrated"]), _logit(oof["radiomics"])
    res = {"deep_out_of_fold": round(float(roc_auc(y, deep[:, 0])), 4),
           "radiomics_out_of_fold": round(float(roc_auc(y, radiomics[:, 0])), 4),
           "measurements": same_fold_cv_auc(meas, y, fold),
           "deep_plus_measurements": same_fold_cv_auc(np.hstack([deep, meas]), y, fold),
           "radiomics_plus_measurements": same_fold_cv_auc(np.hstack([radiomics, meas]), y, fold)}
    ceiling = cv.get("ceiling", {})
    for name, auc in res.items():
        print(f"{name:30s} {auc:.3f}   (ceiling {ceiling.get('auc', float('nan')):.3f})")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"notice": RESEARCH_USE_ONLY, "command": " ".join(sys.argv), "n": int(len(y)),
                                     "cv_json": str(a.cv), "cv_model_auc": cv.get("cv", {}).get("cv_auc"),
                                     "ceiling": ceiling, "measurements": list(TRAITS), "auc": res,
                                     "software": package_versions(("numpy", "scikit-learn"))}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
