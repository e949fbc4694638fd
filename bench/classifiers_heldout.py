"""Experiment: a shipped classifier on a held-out phantom cohort (a seed its training never used) vs the ceiling.

The model is used exactly as the CLI and the server use it (:class:`oncolabel.classification.ClassifierPredictor`,
heads and measurements from the checkpoint). Reports the AUC (DeLong 95% CI) of the image-only probability against
the cohort's image-only ceiling (the generator's posterior without clinical variables, where the generator has one)
and, for a task with clinical covariates (renal: age, sex, size from the case records), the multivariable
probability against the full ceiling; DeLong tests, calibration (Brier, slope, intercept) and which head was used.

    oncolabel phantoms renal-mass --n 500 --seed 13 --out /tmp/rm500s13
    python bench/classifiers_heldout.py --task renal_mass --cohort /tmp/rm500s13 [--model CKPT] [--out R.json]

With ``--update-with COHORT --update-n N ...`` the image-only AUC is also reported after the server's training-round
update of the measurement heads (:func:`oncolabel.classification.update_measurement_heads`, its default of 10
cases per class) from the first N labelled cases of another cohort, the network unchanged: what a site's labels do
to the shipped head.

Research use only (synthetic phantoms).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oncolabel.classification import ClassifierPredictor
from oncolabel.phantoms.io import read_classification_cohort, read_manifest
from oncolabel.stats import calibration, delong_test, roc_auc_ci
from oncolabel.tasks import get_task


def _auc(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    r = roc_auc_ci(y, s)
    return {"auc": round(float(r.auc), 4), "ci95": [round(float(r.ci_low), 4), round(float(r.ci_high), 4)]}


def _summary(y: np.ndarray, p: np.ndarray, ceiling: np.ndarray) -> dict[str, object]:
    d = delong_test(y, p, ceiling)
    cal = calibration(y, p)
    return {**_auc(y, p), "ceiling": _auc(y, ceiling), "gap": round(float(d.auc_b - d.auc_a), 4),
            "delong_p_vs_ceiling": round(float(d.p_value), 4), "brier": round(float(cal.brier), 4),
            "calibration_slope": round(float(cal.slope), 3), "calibration_intercept": round(float(cal.intercept), 3)}


def head_update(predictor: ClassifierPredictor, spec: Any, raw: list[dict], y: np.ndarray, ceiling: np.ndarray,
                cohort: Path, sizes: list[int]) -> list[dict[str, object]]:
    """Image-only AUC on ``raw`` after updating the predictor's measurement heads from the first N cases of
    ``cohort`` (the server's update after a training round; the network is not fine-tuned here)."""
    from oncolabel.classification import select_head, update_measurement_heads
    from oncolabel.errors import InvalidInputError

    scores = []
    for it in raw:
        images = spec.preprocessing.read(it)
        s = dict(predictor.scores(predictor.preprocessing.prepare(images)))
        try:
            s.update({k: np.array([v]) for k, v in spec.preprocessing.measure(images).items()
                      if k in spec.preprocessing.measurement_names})
        except InvalidInputError:
            pass
        scores.append(s)
    labelled = [{**{k: it[k] for k in spec.preprocessing.inputs}, "label": it["label"]}
                for it in read_classification_cohort(cohort)]
    rows = []
    for n in sizes:
        heads = update_measurement_heads(predictor.heads, predictor.model, spec, labelled[:n])
        image_heads = [h for h in heads if h.method != "multivariable"]
        p = np.array([float(select_head(image_heads, set(s)).predict(s)[0]) for s in scores])
        updated = any("updated_on" in h.info for h in heads)
        rows.append({"labels": n, "benign": sum(1 for it in labelled[:n] if it["label"] == 0),
                     "updated": updated, **_summary(y, p, ceiling)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", required=True, choices=["renal_mass", "pet_lymphoma", "hn_response"])
    ap.add_argument("--cohort", required=True, type=Path)
    ap.add_argument("--model", type=Path, help="checkpoint (default: the task's shipped model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--update-with", type=Path, metavar="COHORT", help="labelled cohort for the head update")
    ap.add_argument("--update-n", type=int, nargs="+", default=[20, 50, 100, 200], metavar="N")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    spec = get_task(a.task)
    predictor = ClassifierPredictor(a.model, task=a.task)  # None: the task's shipped model
    raw = read_classification_cohort(a.cohort)
    start = time.time()
    y, p_img, p_mv, heads, errors = [], [], [], collections.Counter(), collections.Counter()
    for it in raw:
        images = spec.preprocessing.read(it)
        res = predictor.predict(images, heatmaps=False)
        y.append(int(it["label"]))
        p_img.append(res.probabilities[predictor.classes[1]])
        heads[" + ".join(res.head["inputs"])] += 1
        if res.measurement_error:
            errors[res.measurement_error] += 1
        if spec.postprocessing.covariates:
            t = it["record"]["traits"]
            cov = {"age": t["age"], "sex_male": float(t["sex"] == "M"), "size_mm": t["diameter_mm"]}
            p_mv.append(predictor.predict_prepared(predictor.preprocessing.prepare(images), covariates=cov,
                                                   heatmaps=False,
                                                   measurements=res.measurements or None).probabilities[
                predictor.classes[1]])
    y_arr = np.array(y)
    full = np.array([it["posterior"] for it in raw])
    image_post = np.array([it["record"]["traits"].get("image_posterior", it["posterior"]) for it in raw])
    out: dict[str, object] = {
        "task": a.task, "command": " ".join(sys.argv), "cohort": str(a.cohort),
        "cohort_summary": read_manifest(a.cohort).get("summary"), "model_version": predictor.version,
        "n": int(y_arr.size), "positives": int(y_arr.sum()), "image_only": _summary(y_arr, np.array(p_img), image_post),
        "heads_used": dict(heads), "measurement_errors": dict(errors), "seconds": round(time.time() - start, 1),
        "notice": "research use only: synthetic phantoms"}
    if p_mv:
        out["multivariable"] = _summary(y_arr, np.array(p_mv), full)
    if a.update_with:
        out["head_update"] = head_update(predictor, spec, raw, y_arr, image_post, a.update_with, a.update_n)
    text = json.dumps(out, indent=1)
    sys.stdout.write(text + "\n")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
