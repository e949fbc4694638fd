"""Experiment: how much of the renal-mass ceiling can be seen in the images at all?

The ceiling AUC is the AUC of the generator's posterior given the latent traits it drew (unenhanced HU, enhancement
per phase, central area, heterogeneity). The scanner shows those traits only through noise, blur, partial volume and
a patient enhancement factor, and the posterior is a mixture over four subtypes (an oncocytoma mimics a clear-cell
RCC), so a model of the image has two handicaps: measuring the traits and learning the non-linear posterior. This
script separates them on a cohort, with the tumour masks (which the CNN never gets):

1. learners on the *true* traits (cross-validated): logistic regression on the traits (``linear``) and on their
   squares and products (``quadratic``), quadratic discriminant analysis, gradient-boosted trees: what a model that
   measured every trait perfectly could learn from ``n`` cases (the ceiling needs the generator's exact posterior,
   a four-subtype mixture, which none of them is given);
2. ``ROI features, linear``: per phase, percentiles and spread of the (lightly smoothed) mass attenuation and the
   95th percentile of a ring around it (kidney cortex: the enhancement factor's reference) -> logistic regression;
3. ``traits estimated from ROI features``: each trait predicted from the ROI features (ridge, cross-validated;
   correlation with the truth reported), then plugged into the generator's own posterior (the best use of such
   measurements if the model were known);
   the same estimates -> quadratic logistic regression (a two-stage learner that does not know the posterior);
4. ``mass measurements (no mask)``: the shipped model's measurements (:mod:`oncolabel.features.renal`: the mass
   found as the sphere with the strongest edge around the region's centre, attenuation, enhancement relative to
   the renal cortex, central deficit, cross-phase texture) -> the library's logistic head, linear and quadratic
   (``c = 0.1``, as the shipped head); correlation of each with its trait;
5. the ceiling, and the generator's posterior given only some traits (which traits carry the information).

    python bench/renal_mass_observability.py --cohort DIR [--n 300 600 1000] [--out results.json]

Research use only (synthetic phantoms).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from oncolabel.phantoms.io import read_classification_cohort
from oncolabel.phantoms.renal_mass import IMAGE_TRAITS, PHASES, posterior_malignant
from oncolabel.stats import roc_auc

TRAITS = ("unenhanced_hu", "corticomedullary", "nephrographic", "excretory", "central_area", "log_heterogeneity")


def roi_features(item: dict) -> list[float]:
    mask = sitk.GetArrayFromImage(sitk.ReadImage(item["mask"])) > 0
    core = ndimage.binary_erosion(mask, iterations=1)
    if core.sum() < 10:
        core = mask
    ring = ndimage.binary_dilation(mask, iterations=8) & ~ndimage.binary_dilation(mask, iterations=2)
    out: list[float] = []
    for phase in PHASES:
        a = ndimage.gaussian_filter(sitk.GetArrayFromImage(sitk.ReadImage(item[phase])).astype(float), (0, 1.0, 1.0))
        v = a[core]
        out += list(np.percentile(v, [10, 25, 50, 75, 90])) + [float(v.std()), float(np.percentile(a[ring], 95))]
    return out


def true_traits(item: dict) -> list[float]:
    t = item["record"]["traits"]
    return [t["unenhanced_hu"], *(t["enhancement_hu"][p] for p in PHASES[1:]), float(t["central_area"]),
            t["log_heterogeneity"]]


def observability(items: list[dict], folds: int = 5) -> dict:
    """AUCs of the learners above and the trait-measurement correlations on ``items`` (cohort entries)."""
    y = np.array([it["label"] for it in items])
    X = np.array([roi_features(it) for it in items])
    T = np.array([true_traits(it) for it in items])
    ceiling = [it["record"]["traits"]["image_posterior"] for it in items]
    quad = PolynomialFeatures(2, include_bias=False)

    def cv_auc(model, Z: np.ndarray) -> float:
        method = "decision_function" if hasattr(model, "decision_function") else "predict_proba"
        s = cross_val_predict(model, Z, y, cv=folds, method=method)
        return float(roc_auc(y, s if s.ndim == 1 else s[:, 1]))

    def lr(c: float = 1.0):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))

    est = np.column_stack([cross_val_predict(make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))),
                                             X, T[:, j], cv=folds) for j in range(T.shape[1])])
    plug = [posterior_malignant({"unenhanced_hu": r[0], "enhancement_hu": dict(zip(PHASES[1:], r[1:4])),
                                 "central_area": bool(r[4] > 0.5), "log_heterogeneity": r[5]}, clinical=False)
            for r in est]
    meas = mass_measurements(items)
    return {"n": len(items), "malignant": int(y.sum()),
            "auc": {"traits, linear": cv_auc(lr(), T), "traits, quadratic": cv_auc(lr(), quad.fit_transform(T)),
                    "traits, QDA": cv_auc(QuadraticDiscriminantAnalysis(reg_param=0.05), T),
                    "traits, gradient boosting": cv_auc(HistGradientBoostingClassifier(max_depth=3, learning_rate=0.05,
                                                                                       max_iter=200), T),
                    "ROI features, linear": cv_auc(lr(), X),
                    "traits estimated from ROI features, quadratic": cv_auc(lr(), quad.fit_transform(est)),
                    "traits estimated from ROI features, generator posterior": float(roc_auc(y, plug)),
                    "mass measurements (no mask), linear": head_cv_auc(meas, y, folds, quadratic=False),
                    "mass measurements (no mask), quadratic": head_cv_auc(meas, y, folds, quadratic=True),
                    "ceiling (posterior of the true traits)": float(roc_auc(y, ceiling))},
            "mass_measurement_trait_correlation": {name: float(np.corrcoef(meas[:, j], T[:, j])[0, 1])
                                                   for j, name in enumerate(TRAITS)},
            "trait_measurement_correlation": {name: float(np.corrcoef(est[:, j], T[:, j])[0, 1])
                                              for j, name in enumerate(TRAITS)},
            "posterior_auc_given_only": subset_ceilings(items)}


def mass_measurements(items: list[dict]) -> np.ndarray:
    """The shipped renal model's image measurements of each case (no mask), in the order of ``TRAITS``."""
    from oncolabel.features.renal import RENAL_MEASUREMENT_NAMES, measure_renal_mass

    rows = []
    for it in items:
        m = measure_renal_mass({p: sitk.ReadImage(it[p]) for p in PHASES})
        rows.append([m[k] for k in RENAL_MEASUREMENT_NAMES])
    return np.array(rows)


def head_cv_auc(x: np.ndarray, y: np.ndarray, folds: int, *, quadratic: bool, c: float = 0.1) -> float:
    """Cross-validated AUC of the library's logistic head (as the shipped model fits it) on the columns of ``x``."""
    from sklearn.model_selection import StratifiedKFold

    from oncolabel.classification import fit_logistic

    names = [f"m{j}" for j in range(x.shape[1])]
    s = np.zeros(y.size)
    for tr, te in StratifiedKFold(folds).split(x, y):
        head = fit_logistic({n: x[tr, j] for j, n in enumerate(names)}, y[tr], names, method="stacking", c=c,
                            quadratic=names if quadratic else ())
        s[te] = head.logit({n: x[te, j] for j, n in enumerate(names)})
    return float(roc_auc(y, s))


SUBSETS = {**{t: (t,) for t in IMAGE_TRAITS}, "enhancement (4 phases)": IMAGE_TRAITS[:4],
           "all but heterogeneity": IMAGE_TRAITS[:5],
           "unenhanced + corticomedullary + heterogeneity": ("unenhanced", "corticomedullary", "heterogeneity"),
           "all but central area": IMAGE_TRAITS[:4] + ("heterogeneity",), "all": IMAGE_TRAITS}


def subset_ceilings(items: list[dict]) -> dict[str, float]:
    """AUC of the generator's posterior given only a subset of the true image traits."""
    y = [it["label"] for it in items]
    traits = [it["record"]["traits"] for it in items]
    return {name: round(float(roc_auc(y, [posterior_malignant(t, clinical=False, use=use) for t in traits])), 4)
            for name, use in SUBSETS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--n", type=int, nargs="+", default=[600], help="first N cases of the cohort (several: a curve)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    items = read_classification_cohort(a.cohort)
    too_many = [n for n in a.n if n > len(items)]
    if too_many:
        ap.error(f"--n {too_many}: the cohort holds {len(items)} cases")
    res = {"cohort": a.cohort, "command": " ".join(sys.argv), "folds": a.folds,
           "results": [observability(items[:n], a.folds) for n in a.n], "notice": "research use only: synthetic phantoms"}
    text = json.dumps(res, indent=2)
    sys.stdout.write(text + "\n")
    if a.out:
        with open(a.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
