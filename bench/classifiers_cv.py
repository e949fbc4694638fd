"""Experiment: patient-level 5-fold CV of a classification task on a phantom cohort, against the cohort's ceiling.

For ``renal_mass``, ``pet_lymphoma`` or ``hn_response``: generates (or reuses) a phantom cohort, cross-validates the
task's network with the generic trainer, fits the calibrated heads on the out-of-fold predictions, and prints the
cross-validated AUC next to the ceiling AUC (the AUC of the generator's own posterior), with DeLong comparisons and
the study's task-specific analyses:

* renal_mass: AUC per phase with DeLong tests between phases, the stacked four-phase model (with the network's fused
  classifier when it has one), and the multivariable logistic regression (CNN output, age, sex, size) with Wald
  tests, against the image-only and the full ceilings;
* pet_lymphoma: accuracy / sensitivity / specificity at 0.5 and the regional-uptake table with Fisher's exact test;
* hn_response: the shipped model (deep features stacked with the noise-referenced tumour measurements), each part
  alone, hand-crafted radiomics (pyradiomics first-order + shape) and the clinical model, with DeLong tests.

With ``--ship PATH`` the final model (trained on every case, heads inside) is written to PATH with a JSON card next
to it (command, seed, metrics). With ``--report FILE`` an HTML report (ROC, DeLong, calibration / reliability) is
written.

    python bench/classifiers_cv.py --task renal_mass --cohort /tmp/rm300 --generate 300 --cohort-seed 11 \
        --out results/renal_mass_cv.json --report results/renal_mass_cv.html --ship lib/oncolabel/models/renal_mass.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oncolabel.classification import calibrated_oof, cross_validate, cv_metrics, fit_classifier, model_card
from oncolabel.phantoms.io import read_classification_cohort, read_manifest
from oncolabel.stats import delong_test, diagnostic_metrics, roc_auc_ci
from oncolabel.tasks import get_task

WRITERS = {"renal_mass": "oncolabel.phantoms.renal_mass:write_renal_mass_cohort",
           "pet_lymphoma": "oncolabel.phantoms.pet_lymphoma:write_pet_lymphoma_cohort",
           "hn_response": "oncolabel.phantoms.hn_response:write_hn_response_cohort"}


def _writer(task: str) -> Any:
    import importlib

    mod, fn = WRITERS[task].split(":")
    return getattr(importlib.import_module(mod), fn)


def _auc(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    r = roc_auc_ci(y, s)
    return {"auc": round(float(r.auc), 4), "ci95": [round(float(r.ci_low), 4), round(float(r.ci_high), 4)]}


def _delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    r = delong_test(y, a, b)
    return {"auc_a": round(float(r.auc_a), 4), "auc_b": round(float(r.auc_b), 4),
            "difference": round(float(r.diff), 4), "p": round(float(r.p_value), 4)}


def _cv_predict_lr(x: np.ndarray, y: np.ndarray, folds: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Out-of-fold probabilities of a standardised L2 logistic regression (same folds as the CNN)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.zeros(y.size)
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(x[tr], y[tr])
        out[te] = model.predict_proba(x[te])[:, 1]
    return out


def _cv_head(scores: dict[str, Any], y: np.ndarray, folds: np.ndarray, inputs: list[str], *,
             quadratic: tuple[str, ...] | list[str] = (), c: float = 1e4) -> np.ndarray:
    """Out-of-fold probabilities of the library's logistic head on the named scores (same folds as the CNN)."""
    from oncolabel.classification import fit_logistic

    out = np.zeros(y.size)
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        head = fit_logistic({n: np.asarray(scores[n])[tr] for n in inputs}, y[tr], inputs, method="stacking",
                            quadratic=quadratic, c=c)
        out[te] = head.predict({n: np.asarray(scores[n])[te] for n in inputs})
    return out


def _wald(x: np.ndarray, y: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Unpenalised logistic regression with Wald 95% CIs and p values (odds ratios per SD of each variable)."""
    from scipy import stats
    from sklearn.linear_model import LogisticRegression

    z = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    lr = LogisticRegression(C=1e6, max_iter=10000).fit(z, y)
    design = np.column_stack([np.ones(len(y)), z])
    p = lr.predict_proba(z)[:, 1]
    cov = np.linalg.inv(design.T @ (design * (p * (1 - p))[:, None]))
    beta = np.concatenate([lr.intercept_, lr.coef_[0]])
    se = np.sqrt(np.diag(cov))
    rows = []
    for name, b, s in zip(["intercept"] + names, beta, se):
        rows.append({"variable": name, "coef_per_sd": round(float(b), 4), "odds_ratio_per_sd": round(float(np.exp(b)), 3),
                     "ci95": [round(float(np.exp(b - 1.96 * s)), 3), round(float(np.exp(b + 1.96 * s)), 3)],
                     "p": round(float(2 * stats.norm.sf(abs(b / s))), 4)})
    return rows


def renal_analysis(res: Any, raw: list[dict[str, Any]], y: np.ndarray, p_cal: np.ndarray) -> tuple[dict, dict]:
    from oncolabel.tasks.renal_mass import PHASES

    traits = [it["record"]["traits"] for it in raw]
    s = res.scores
    out: dict[str, Any] = {"per_phase": {ph: _auc(y, s[f"margin_{ph}"]) for ph in PHASES}}
    out["phase_delong"] = {f"{a} vs {b}": _delong(y, s[f"margin_{a}"], s[f"margin_{b}"])
                           for i, a in enumerate(PHASES) for b in PHASES[i + 1:]}
    age = np.array([t["age"] for t in traits])
    male = np.array([t["sex"] == "M" for t in traits], dtype=float)
    size = np.array([t["diameter_mm"] for t in traits])
    x_mv = np.column_stack([s["margin_corticomedullary"], age, male, size])
    p_mv = _cv_predict_lr(x_mv, y, res.fold)
    fused = ["margin_fused"] if "margin_fused" in s else []  # a network with a fused classifier over the phases
    x_all = np.column_stack([s[k] for k in fused] + [s[f"margin_{ph}"] for ph in PHASES] + [age, male, size])
    p_all = _cv_predict_lr(x_all, y, res.fold)
    image_post = np.array([t["image_posterior"] for t in traits])
    out["multivariable_cm"] = {**_auc(y, p_mv), "coefficients": _wald(x_mv, y, ["cnn_corticomedullary", "age",
                                                                                 "sex_male", "size_mm"])}
    if fused:
        out["fused"] = _auc(y, s["margin_fused"])
        x_fu = np.column_stack([s["margin_fused"], age, male, size])
        out["multivariable_fused"] = {**_auc(y, _cv_predict_lr(x_fu, y, res.fold)),
                                      "coefficients": _wald(x_fu, y, ["cnn_fused", "age", "sex_male", "size_mm"])}
        out["fused_vs_corticomedullary"] = _delong(y, s["margin_fused"], s["margin_corticomedullary"])
    out["multivariable_all_phases"] = _auc(y, p_all)
    out["image_ceiling"] = _auc(y, image_post)
    out["stacked_vs_image_ceiling"] = _delong(y, p_cal, image_post)
    out["gap_stacked_vs_image_ceiling"] = round(float(out["image_ceiling"]["auc"] - _auc(y, p_cal)["auc"]), 4)
    out["multivariable_all_vs_ceiling"] = _delong(y, p_all, np.array([it["posterior"] for it in raw]))
    models = {f"cnn_{ph}": s[f"margin_{ph}"] for ph in PHASES}
    if fused:
        models["cnn_fused"] = s["margin_fused"]
    models.update({"multivariable_cm": p_mv, "multivariable_all": p_all, "image_ceiling": image_post})
    post = get_task("renal_mass").postprocessing
    measured = [m for m in post.measurements if m in s]
    if measured:  # the shipped head stacks the margins with the mass measurements: each part alone, same folds
        quad = measured if post.quadratic_measurements else []
        margins = fused + [f"margin_{ph}" for ph in PHASES]
        p_net = _cv_head(s, y, res.fold, margins)
        p_meas = _cv_head(s, y, res.fold, measured, quadratic=quad, c=post.measurement_c)
        covs = {"age": age, "sex_male": male, "size_mm": size}
        p_mvm = _cv_head({**s, **covs}, y, res.fold, margins + measured + list(covs), quadratic=quad,
                         c=post.measurement_c)
        full_post = np.array([it["posterior"] for it in raw])
        truth = {"unenhanced_hu": [t["unenhanced_hu"] for t in traits],
                 **{f"relative_enhancement_{ph}": [t["enhancement_hu"][ph] for t in traits] for ph in PHASES[1:]},
                 "central_deficit": [float(t["central_area"]) for t in traits],
                 "log_heterogeneity": [t["log_heterogeneity"] for t in traits]}
        out.update({"model_inputs": margins + measured, "quadratic_in": quad, "network_alone": _auc(y, p_net),
                    "measurements_alone": _auc(y, p_meas), "model_vs_network_alone": _delong(y, p_cal, p_net),
                    "model_vs_measurements_alone": _delong(y, p_cal, p_meas),
                    "multivariable_with_measurements": _auc(y, p_mvm),
                    "multivariable_with_measurements_vs_ceiling": _delong(y, p_mvm, full_post),
                    "measurement_vs_trait_r": {m: round(float(np.corrcoef(s[m], truth[m])[0, 1]), 4)
                                               for m in measured if m in truth}})
        models.update({"network_alone": p_net, "measurements_alone": p_meas, "multivariable_with_measurements": p_mvm})
    return out, models


def pet_analysis(res: Any, raw: list[dict[str, Any]], y: np.ndarray, p_cal: np.ndarray) -> tuple[dict, dict]:
    from oncolabel.tasks.pet_lymphoma import region_table

    d = diagnostic_metrics(y, p_cal, threshold=0.5)
    table = region_table([{"class": it["record"]["label_name"], "involved": it["record"]["traits"]["involved"]}
                          for it in raw])
    out = {"at_0.5": {"accuracy": round((d.tp + d.tn) / d.n, 4), "sensitivity": round(float(d.sensitivity.estimate), 4),
                      "specificity": round(float(d.specificity.estimate), 4)},
           "region_table": {"columns": list(table.columns), "rows": [list(r) for r in table.rows]}}
    return out, {}


def hn_analysis(res: Any, raw: list[dict[str, Any]], y: np.ndarray, p_cal: np.ndarray) -> tuple[dict, dict]:
    from oncolabel.io import read_image
    from oncolabel.tasks.hn_response import clinical_features, radiomic_features

    t0 = time.time()
    rad = [radiomic_features(read_image(it["image"]), read_image(it["mask"])) for it in raw]
    names = sorted(rad[0])
    x_rad = np.array([[r[k] for k in names] for r in rad])
    p_rad = _cv_predict_lr(x_rad, y, res.fold, c=0.1)
    clin = [clinical_features(it["record"]["traits"]) for it in raw]
    cnames = sorted(clin[0])
    p_clin = _cv_predict_lr(np.array([[c[k] for k in cnames] for c in clin]), y, res.fold)
    out = {"radiomics": {**_auc(y, p_rad), "features": len(names), "seconds": round(time.time() - t0, 1)},
           "clinical": {**_auc(y, p_clin), "variables": cnames},
           "cnn_output": _auc(y, res.scores["margin"]),
           "model_vs_radiomics": _delong(y, p_cal, p_rad), "model_vs_clinical": _delong(y, p_cal, p_clin)}
    models = {"radiomics": p_rad, "clinical": p_clin, "cnn_output": res.scores["margin"]}
    measured = [m for m in get_task("hn_response").postprocessing.measurements if m in res.scores]
    if measured:  # the shipped head stacks deep features and measurements: each part alone, on the same folds
        p_meas = _cv_predict_lr(np.column_stack([res.scores[m] for m in measured]), y, res.fold)
        out["model_inputs"] = ["deep-feature margin", *measured]
        out["deep_features_alone"] = _auc(y, res.scores["feature_margin"])
        out["measurements_alone"] = _auc(y, p_meas)
        out["model_vs_measurements_alone"] = _delong(y, p_cal, p_meas)
        out["model_vs_deep_features_alone"] = _delong(y, p_cal, res.scores["feature_margin"])
        out["deep_features_alone_vs_radiomics"] = _delong(y, res.scores["feature_margin"], p_rad)
        models.update({"deep_features_alone": res.scores["feature_margin"], "measurements_alone": p_meas})
    return out, models


def hn_soft_labels(items: list[dict[str, Any]], raw: list[dict[str, Any]], spread: float
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """H&N training items with soft labels from the shrinkage rate measured on the two masks (pre-treatment and
    follow-up): ``Phi((rate - median) / (spread x SD))``, the median and SD over the cohort (the label is the
    median split of the same rates). Only training folds' items are trained on; test folds are scored on images."""
    from oncolabel.io import read_image
    from oncolabel.tasks.hn_response import cohort_soft_labels, shrinkage_rate

    rates = np.array([shrinkage_rate(read_image(it["mask"]), read_image(it["followup_mask"])) for it in raw])
    q, info = cohort_soft_labels(rates, spread)
    agree = float(np.mean((rates > info["threshold_rate"]) == np.array([it["label"] for it in items], dtype=bool)))
    info.update({"source": "1 - V_followup / V_pre from the masks", "sign_agrees_with_label": round(agree, 4)})
    return [{**it, "soft_label": float(v)} for it, v in zip(items, q)], info


ANALYSES = {"renal_mass": renal_analysis, "pet_lymphoma": pet_analysis, "hn_response": hn_analysis}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=sorted(WRITERS))
    ap.add_argument("--cohort", required=True, type=Path, help="cohort folder (written first with --generate)")
    ap.add_argument("--generate", type=int, metavar="N", help="write an N-case cohort if the folder has none")
    ap.add_argument("--cohort-seed", type=int, default=11)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="training seed (fold k uses seed + k)")
    ap.add_argument("--iterations", type=int, help="training iterations per fold (default: the task spec's)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--learning-rate", type=float)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--soft-spread", type=float, metavar="S",
                    help="hn_response: train on soft labels from the follow-up masks' shrinkage rate, spread S x SD "
                         "(see hn_soft_labels); default: the class labels")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    ap.add_argument("--report", type=Path, help="write an HTML report (ROC, DeLong, calibration)")
    ap.add_argument("--ship", type=Path, help="also train the final model on every case and write it here (+ .json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = get_task(args.task)
    start = time.time()
    if not (args.cohort / "manifest.json").exists():
        if not args.generate:
            ap.error(f"{args.cohort} holds no cohort; pass --generate N")
        _writer(args.task)(args.cohort, args.generate, args.cohort_seed)
        print(f"cohort written in {time.time() - start:.0f} s", flush=True)
    manifest = read_manifest(args.cohort)
    raw = read_classification_cohort(args.cohort)
    items = [{**{k: it[k] for k in spec.preprocessing.inputs}, "label": it["label"]} for it in raw]
    groups = [it["case_id"] for it in raw]
    soft = None
    if args.soft_spread:
        if args.task != "hn_response":
            ap.error("--soft-spread needs --task hn_response (the cohort's follow-up masks)")
        items, soft = hn_soft_labels(items, raw, args.soft_spread)
    y = np.array([it["label"] for it in items])
    posterior = np.array([it["posterior"] for it in raw])
    cov = None
    if spec.postprocessing.covariates:  # renal: age, sex, size from the case records
        tr = [it["record"]["traits"] for it in raw]
        cov = {"age": np.array([t["age"] for t in tr]), "sex_male": np.array([t["sex"] == "M" for t in tr], float),
               "size_mm": np.array([t["diameter_mm"] for t in tr])}
    kw = dict(groups=groups, n_splits=args.folds, seed=args.seed, iterations=args.iterations,
              batch_size=args.batch_size, learning_rate=args.learning_rate,
              progress=lambda r: print("  fold", r, flush=True))
    if args.ship:
        fit = fit_classifier(spec, items, covariates=cov, **kw)
        cv, p_cal = fit.cv, fit.calibrated_oof
    else:
        cv = cross_validate(spec, items, feature_c=0.05 if spec.postprocessing.head == "deep_features" else None,
                            **kw)
        p_cal = calibrated_oof(spec, cv)
    metrics = cv_metrics(cv, p_cal)
    ceiling = _auc(y, posterior)
    results: dict[str, Any] = {
        "task": args.task, "command": " ".join(sys.argv), "cohort": str(args.cohort),
        "cohort_summary": manifest.get("summary"), "n": int(y.size), "positives": int(y.sum()),
        "cv": metrics, "ceiling": ceiling, "gap_ceiling_minus_cv": round(ceiling["auc"] - metrics["cv_auc"], 4),
        "model_vs_ceiling_delong": _delong(y, p_cal, posterior), "cv_settings": cv.settings, "soft_labels": soft,
        "cv_seconds": round(cv.seconds, 1)}
    extra, models = ANALYSES[args.task](cv, raw, y, p_cal)
    results[args.task] = extra
    results["seconds"] = round(time.time() - start, 1)
    print(json.dumps({k: v for k, v in results.items() if k != "cohort_summary"}, indent=1, default=str))
    results["out_of_fold"] = {"case_id": groups, "y": y.tolist(), "fold": cv.fold.tolist(),
                              "posterior": posterior.tolist(), "calibrated": p_cal.tolist(),
                              **{k: np.asarray(v).tolist() for k, v in cv.scores.items()},
                              **{k: np.asarray(v).tolist() for k, v in models.items()}}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
    if args.report:
        from oncolabel.report import PredictionTable, build_report, write_report
        from oncolabel.report.build import Section

        scores = {"model_calibrated": p_cal, "ceiling_posterior": posterior, **models}
        pred = PredictionTable.from_arrays(y, scores, patient_id=groups)
        report = build_report(pred, title=f"{args.task}: {args.folds}-fold patient-level CV vs phantom ceiling",
                              task=args.task, cohort=str(args.cohort))
        if args.task == "pet_lymphoma":
            from oncolabel.tasks.pet_lymphoma import region_table

            table = region_table([{"class": it["record"]["label_name"],
                                   "involved": it["record"]["traits"]["involved"]} for it in raw])
            report = dataclasses.replace(report, sections=report.sections + (
                Section(key="regions", title="Regional FDG uptake (phantom annotations)", tables=(table,)),))
        write_report(report, args.report)
    if args.ship:
        from oncolabel.checkpoint import save_checkpoint

        ckpt = fit.checkpoint
        ckpt.metrics.update({"ceiling_auc": ceiling["auc"], "gap_ceiling_minus_cv": results["gap_ceiling_minus_cv"]})
        if "image_ceiling" in extra:  # the image-only model against the image-only ceiling (renal: no age, sex)
            ckpt.metrics.update({"image_ceiling_auc": extra["image_ceiling"]["auc"],
                                 "gap_image_ceiling_minus_cv": extra["gap_stacked_vs_image_ceiling"]})
        ckpt.training["command"] = " ".join(sys.argv)
        if soft:
            ckpt.training["soft_labels"] = soft
        save_checkpoint(ckpt, args.ship)
        card = model_card(ckpt, command=" ".join(sys.argv), seed=args.seed,
                          cohort={"path": str(args.cohort), "generator": manifest.get("generator"),
                                  "seed": manifest.get("seed"), "n": manifest.get("n"),
                                  "summary": {k: v for k, v in (manifest.get("summary") or {}).items()
                                              if k != "region_table"}},
                          extra={"analysis": extra})
        args.ship.with_suffix(".json").write_text(json.dumps(card, indent=2, default=str))
        print(f"shipped {args.ship} (model {ckpt.version}, {args.ship.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
