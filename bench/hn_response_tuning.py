"""Experiment: choose the head-and-neck response CNN's settings on a fixed split (train cohort -> test cohort).

Each setting is a JSON object of overrides of the ``hn_response`` task spec: ``preprocessing`` fields (e.g.
``context_mm``, ``rotate``), ``network`` keyword arguments (``channels``, ``dropout``, ``in_channels``), ``training``
fields (``max_iterations``, ``learning_rate``, ``weight_decay``, ``batch_size``), plus

* ``soft_spread``: train on soft labels ``Phi((rate - median) / (spread x SD of the rates))`` from the shrinkage
  rate measured on the follow-up masks (:func:`oncolabel.tasks.hn_response.cohort_soft_labels`); absent: hard labels;
* ``feature_c``: inverse L2 penalty of the deep-feature logistic regression (default 0.05, the shipped head's);
* ``seeds``: training seeds; with several, the test probabilities of the seeds' feature regressions are averaged.

For each setting the network is trained once per seed on the whole train cohort with the generic trainer (no
early stopping), the deep-feature regression is fitted on the train cohort's features, and the test cohort gives
the AUC of the network's margin, of the deep-feature regression, and of the deep features + log tumour volume (from
the mask). References on the same test cohort: its ceiling, and a logistic regression on the four true traits
fitted on the train cohort; and ``trait_readout_r``, how well each true trait can be read out of the deep
features (ridge regression fitted on the train cohort, correlation on the test cohort). One split: differences below about 0.02 are noise (the AUC's SE is about 0.025).

    python bench/hn_response_tuning.py --train /tmp/hn/hn300 --test /tmp/hn/hn300b --threads 1 \\
        --setting base='{}' --setting soft='{"soft_spread": 0.5, "training": {"max_iterations": 300}}'

Research use only (synthetic phantoms).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from oncolabel.classification import CachedPreprocessing, checkpoint_model, fit_logistic, network_outputs
from oncolabel.phantoms.hn_response import WEIGHTS
from oncolabel.phantoms.io import read_classification_cohort
from oncolabel.stats import roc_auc
from oncolabel.tasks import TaskSpec, get_task
from oncolabel.tasks.base import spec_variant
from oncolabel.tasks.hn_response import cohort_soft_labels, mask_volume_ml, shrinkage_rate
from oncolabel.training import Trainer


def cohort_items(path: str, n: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Items (image, mask, label, rate) and the raw cohort records."""
    raw = read_classification_cohort(path)[:n]
    items = []
    for it in raw:
        rate = shrinkage_rate(sitk.ReadImage(it["mask"]), sitk.ReadImage(it["followup_mask"]))
        items.append({"image": it["image"], "mask": it["mask"], "label": int(it["label"]), "rate": rate})
    return items, raw


def with_soft_labels(items: Sequence[Mapping[str, Any]], spread: float | None) -> list[dict[str, Any]]:
    """Training items; with ``spread`` each carries ``soft_label`` (threshold = the median rate of ``items``)."""
    out = [{k: v for k, v in it.items() if k != "rate"} for it in items]
    if spread is None:
        return out
    q, _ = cohort_soft_labels([it["rate"] for it in items], spread)
    return [{**it, "soft_label": float(v)} for it, v in zip(out, q)]


def configured_spec(setting: Mapping[str, Any]) -> TaskSpec:
    return spec_variant(get_task("hn_response"), preprocessing=setting.get("preprocessing"),
                        network=setting.get("network"), training=setting.get("training"))


def log_volume(items: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.array([math.log(mask_volume_ml(sitk.ReadImage(it["mask"]))) for it in items])


def trait_readout(f_tr: np.ndarray, f_te: np.ndarray, t_tr: np.ndarray, t_te: np.ndarray) -> dict[str, float]:
    """Correlation with the truth of each trait predicted from the deep features (ridge fitted on the train
    cohort, applied to the test cohort): which traits the network has learnt to see."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    for i, k in enumerate(WEIGHTS):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(f_tr, t_tr[:, i])
        out[k] = round(float(np.corrcoef(model.predict(f_te), t_te[:, i])[0, 1]), 3)
    return out


def evaluate(setting: Mapping[str, Any], train: list[dict[str, Any]], test: list[dict[str, Any]],
             caches: dict[str, dict], vol: tuple[np.ndarray, np.ndarray],
             traits: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    spec = configured_spec(setting)
    key = json.dumps(spec.preprocessing.to_dict(), sort_keys=True)
    prep = CachedPreprocessing(spec.preprocessing, caches.setdefault(key, {}))
    spec = dataclasses.replace(spec, preprocessing=prep)
    y_tr = np.array([it["label"] for it in train])
    y_te = np.array([it["label"] for it in test])
    train_items = with_soft_labels(train, setting.get("soft_spread"))
    c = float(setting.get("feature_c", 0.05))
    x_tr = torch.stack([prep.load(it) for it in train_items])
    x_te = torch.stack([prep.load(it) for it in test])
    start = time.time()
    margins, p_feat, p_vol, train_auc, readout = [], [], [], [], {}
    p_by_c: dict[float, list[np.ndarray]] = {}
    for seed in setting.get("seeds", [0]):
        result = Trainer(spec, seed=int(seed)).fit(train_items)
        model = checkpoint_model(result.checkpoint)
        out_tr = network_outputs(model, x_tr, features=True)
        out_te = network_outputs(model, x_te, features=True)
        margins.append(out_te["margin"])
        train_auc.append(roc_auc(y_tr, out_tr["margin"]))
        head = fit_logistic({"features": out_tr["features"]}, y_tr, ("features",), method="deep_features", c=c)
        p_feat.append(head.predict({"features": out_te["features"]}))
        both = fit_logistic({"features": out_tr["features"], "log_volume": vol[0]}, y_tr, ("features", "log_volume"),
                            method="deep_features", c=c)
        p_vol.append(both.predict({"features": out_te["features"], "log_volume": vol[1]}))
        for other in (0.01, 0.05, 0.2, 1.0):
            h = fit_logistic({"features": out_tr["features"]}, y_tr, ("features",), method="deep_features", c=other)
            p_by_c.setdefault(other, []).append(h.predict({"features": out_te["features"]}))
        if not readout:
            readout = trait_readout(out_tr["features"], out_te["features"], *traits)
    return {"test_auc_margin": round(float(roc_auc(y_te, np.mean(margins, 0))), 4),
            "test_auc_features": round(float(roc_auc(y_te, np.mean(p_feat, 0))), 4),
            "test_auc_features_volume": round(float(roc_auc(y_te, np.mean(p_vol, 0))), 4),
            "test_auc_features_by_c": {str(k): round(float(roc_auc(y_te, np.mean(v, 0))), 4) for k, v in p_by_c.items()},
            "test_auc_features_per_seed": [round(float(roc_auc(y_te, p)), 4) for p in p_feat],
            "train_auc_margin": [round(float(a), 4) for a in train_auc], "trait_readout_r": readout,
            "seconds": round(time.time() - start, 1),
            "parameters": sum(p.numel() for p in spec.network.build().parameters())}


def traits(raw: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[it["record"]["traits"][k] for k in WEIGHTS] for it in raw])


def references(train_raw: list[dict[str, Any]], test_raw: list[dict[str, Any]]) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_tr = np.array([it["label"] for it in train_raw])
    y_te = np.array([it["label"] for it in test_raw])
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=1e4, max_iter=5000)).fit(traits(train_raw), y_tr)
    return {"test_ceiling_auc": round(float(roc_auc(y_te, [it["posterior"] for it in test_raw])), 4),
            "test_auc_true_traits_lr": round(float(roc_auc(y_te, lr.predict_proba(traits(test_raw))[:, 1])), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--setting", action="append", required=True, metavar="NAME=JSON")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="append one JSON line per setting here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, train_raw = cohort_items(args.train, args.n_train)
    test, test_raw = cohort_items(args.test)
    refs = references(train_raw, test_raw)
    print(json.dumps({"command": " ".join(sys.argv), "n_train": len(train), "n_test": len(test), **refs}), flush=True)
    caches: dict[str, dict] = {}
    vol = (log_volume(train), log_volume(test))
    for entry in args.setting:
        name, _, text = entry.partition("=")
        setting = json.loads(text or "{}")
        res = {"setting": name, **setting,
               **evaluate(setting, train, test, caches, vol, (traits(train_raw), traits(test_raw)))}
        line = json.dumps(res)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
