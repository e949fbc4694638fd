"""Experiment: how much of the head-and-neck response ceiling can a model of the pre-treatment CT reach?

The ceiling AUC is the AUC of the generator's posterior ``Phi(b . z(traits) / sigma)`` over the cohort. Two things
stand between a model and it: the sample size (the weights ``b`` must be learnt from a few hundred binary labels)
and measuring the traits in the image (noise, blur, partial volume). This script separates them on a cohort:

1. ``true traits``: cross-validated logistic regression on the four *true* traits (log volume, necrosis fraction,
   enhancement, log heterogeneity): the sample-size limit of any model with the right inputs;
2. ``image measurements``: each trait measured with a simple, hand-written rule from the CT and the tumour mask at
   the acquired resolution (below), its correlation with the truth, and the cross-validated logistic regression on
   the four measurements (and on each alone);
3. ``network input``: the same measurements from the task's network input (the 2.5 mm tumour cube), to see what
   the preprocessing keeps;
4. the ceiling.

Measurements: :mod:`oncolabel.features.tumour` (the rules the shipped H&N model uses; volume, necrotic fraction,
viable enhancement, heterogeneity with a noise reference in the patient's own homogeneous soft tissue).

    python bench/hn_response_observability.py --cohort DIR [--out results.json]

Research use only (synthetic phantoms).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any, Mapping

import numpy as np
import SimpleITK as sitk
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from oncolabel.features.tumour import measure_tumour, tumour_measurements
from oncolabel.phantoms.hn_response import WEIGHTS
from oncolabel.phantoms.io import read_classification_cohort
from oncolabel.stats import roc_auc

TRAITS = tuple(WEIGHTS)  # log_volume_ml, necrosis_fraction, enhancement_hu, log_heterogeneity


def measure_case(item: Mapping[str, Any]) -> dict[str, float]:
    return measure_tumour(sitk.ReadImage(item["image"]), sitk.ReadImage(item["mask"]))


def measure_network_input(item: Mapping[str, Any]) -> dict[str, float]:
    """The same rules on the task's network input (window undone: HU inside the contour, partial-volume mask)."""
    from oncolabel.tasks.hn_response import PREPROCESSING as P

    x = P.load(item).numpy()
    tumour = x[1]
    inside = tumour > 0.5
    hu = np.where(inside, x[0] / np.maximum(tumour, 1e-6), 0.0) * (P.hu_high - P.hu_low) + P.hu_low
    s = P.spacing_mm
    out = tumour_measurements(np.where(inside, hu, 0.0), tumour, (s, s, s), noise_reference=False)
    out["log_volume_ml"] = math.log(max(float(tumour.sum()) * s ** 3 / 1000.0, 1e-3))
    return out


def cv_auc(x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0, c: float = 1e4) -> float:
    """AUC of out-of-fold probabilities of a standardised logistic regression (stratified k-fold)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    p = cross_val_predict(model, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                          method="predict_proba")[:, 1]
    return float(roc_auc(y, p))


def cv_auc_repeated(x: np.ndarray, y: np.ndarray, repeats: int = 10) -> dict[str, float]:
    aucs = [cv_auc(x, y, seed=r) for r in range(repeats)]
    return {"mean": round(float(np.mean(aucs)), 4), "sd_over_splits": round(float(np.std(aucs)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--n", type=int, help="use the first N cases")
    ap.add_argument("--network-input", action="store_true", help="also measure on the network input cube")
    ap.add_argument("--out", help="write results as JSON")
    args = ap.parse_args()
    start = time.time()
    raw = read_classification_cohort(args.cohort)[: args.n]
    y = np.array([it["label"] for it in raw])
    post = np.array([it["posterior"] for it in raw])
    truth = np.array([[it["record"]["traits"][k] for k in TRAITS] for it in raw])
    meas = [measure_case(it) for it in raw]
    est = np.array([[m[k] for k in TRAITS] for m in meas])
    res: dict[str, Any] = {"command": " ".join(sys.argv), "n": int(y.size), "positives": int(y.sum()),
                           "ceiling_auc": round(float(roc_auc(y, post)), 4)}
    res["true_traits_cv_auc"] = cv_auc_repeated(truth, y)
    res["true_traits_single_auc"] = {k: round(float(roc_auc(y, np.sign(WEIGHTS[k]) * truth[:, i])), 4)
                                     for i, k in enumerate(TRAITS)}
    res["image_measurements"] = {
        k: {"r_with_truth": round(float(np.corrcoef(truth[:, i], est[:, i])[0, 1]), 3),
            "auc_alone": round(float(roc_auc(y, np.sign(WEIGHTS[k]) * est[:, i])), 4)}
        for i, k in enumerate(TRAITS)}
    noise = np.array([it["record"]["meta"]["noise_sd_hu"] for it in raw])
    res["noise_sd_estimate_r"] = round(float(np.corrcoef(noise, [m["noise_sd_hu"] for m in meas])[0, 1]), 3)
    res["image_measurements_cv_auc"] = cv_auc_repeated(est, y)
    res["image_measurements_without_heterogeneity_cv_auc"] = cv_auc_repeated(est[:, :3], y)
    res["true_traits_without_heterogeneity_cv_auc"] = cv_auc_repeated(truth[:, :3], y)
    if args.network_input:
        net = np.array([[m[k] for k in TRAITS] for m in (measure_network_input(it) for it in raw)])
        res["network_input_measurements"] = {
            k: round(float(np.corrcoef(truth[:, i], net[:, i])[0, 1]), 3) for i, k in enumerate(TRAITS)}
        res["network_input_measurements_cv_auc"] = cv_auc_repeated(net, y)
    res["seconds"] = round(time.time() - start, 1)
    print(json.dumps(res, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
