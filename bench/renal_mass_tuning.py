"""Experiment: one renal-mass training setting on a fixed train / validation split (cheap screening before CV).

Trains the task's network with the generic trainer on the first ``--train`` cases of a cohort, with the task spec's
network, preprocessing and training settings replaced by ``--network`` / ``--preprocessing`` / ``--training`` (JSON
objects), and scores the last ``--val`` cases: validation AUC of the network's main margin (the fused classifier's, or
the mean of the branches'), of each phase's branch, of a logistic stacking of the branch (and fused) margins
(5-fold CV inside the validation cases, so nothing is fitted on what it is scored on), the training-set AUC on up to
200 training cases (over- / under-fitting), and the validation cases' image-only ceiling AUC. One JSON line per run
is appended to ``--log``. One seed and 200 validation cases: differences below about 0.04 are noise.

    python bench/renal_mass_tuning.py --cohort /tmp/renal/rm1000 --train 800 --val 200 --iterations 600 \\
        --network '{"fusion": "features"}' --threads 1 --label fused --log /tmp/renal/tuning.jsonl

Research use only (synthetic phantoms).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oncolabel.classification import CachedPreprocessing, checkpoint_model, network_outputs
from oncolabel.phantoms.io import read_classification_cohort
from oncolabel.stats import roc_auc
from oncolabel.tasks import get_task
from oncolabel.tasks.base import spec_variant
from oncolabel.training import Trainer


def variant(spec: Any, network: dict[str, Any], preprocessing: dict[str, Any], training: dict[str, Any]) -> Any:
    """``spec`` with network keyword arguments, preprocessing fields and training defaults replaced (the network's
    input channels follow the preprocessing)."""
    prep = dataclasses.replace(spec.preprocessing, **preprocessing)
    return spec_variant(spec, preprocessing=preprocessing, network={**network, "in_channels": prep.in_channels},
                        training=training)


def cached_tensors(prep: Any, items: list[dict[str, Any]], cache_dir: Path) -> dict[str, torch.Tensor]:
    """The preprocessing's tensors of ``items``, kept on disk per preprocessing setting (cohort reuse)."""
    key = hashlib.sha256(json.dumps([prep.to_dict(), [str(it["corticomedullary"]) for it in items]],
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"renal_tensors_{key}.pt"
    if path.exists():
        return torch.load(path)
    wrapped = CachedPreprocessing(prep)
    for it in items:
        wrapped.load(it)
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save(wrapped.cache, path)
    return wrapped.cache


def stacked_auc(scores: dict[str, np.ndarray], names: list[str], y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    x = np.column_stack([scores[n] for n in names])
    p = cross_val_predict(LogisticRegression(C=1.0, max_iter=5000), (x - x.mean(0)) / (x.std(0) + 1e-12), y, cv=5,
                          method="decision_function")
    return float(roc_auc(y, p))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", required=True, type=Path)
    ap.add_argument("--train", type=int, default=800, help="first N cases train")
    ap.add_argument("--val", type=int, default=200, help="last N cases validate")
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--network", type=json.loads, default={}, help="JSON: network keyword arguments to replace")
    ap.add_argument("--preprocessing", type=json.loads, default={}, help="JSON: preprocessing fields to replace")
    ap.add_argument("--training", type=json.loads, default={}, help="JSON: TrainingSpec fields to replace")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/renal/cache"))
    ap.add_argument("--label", default="")
    ap.add_argument("--log", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    spec = variant(get_task("renal_mass"), a.network, a.preprocessing, a.training)
    raw = read_classification_cohort(a.cohort)
    if a.train + a.val > len(raw):
        ap.error(f"--train {a.train} + --val {a.val} > {len(raw)} cases in {a.cohort}")
    raw_tr, raw_va = raw[:a.train], raw[len(raw) - a.val:]
    inputs = spec.preprocessing.inputs
    items = [{**{k: it[k] for k in inputs}, "label": it["label"]} for it in raw_tr + raw_va]
    tr, va = items[:a.train], items[a.train:]
    start = time.time()
    cache = cached_tensors(spec.preprocessing, items, a.cache)
    prep = CachedPreprocessing(spec.preprocessing, cache)
    t_prep = time.time() - start
    result = Trainer(dataclasses.replace(spec, preprocessing=prep), iterations=a.iterations, seed=a.seed).fit(tr)
    model = checkpoint_model(result.checkpoint)
    branches = list(spec.preprocessing.branch_names)
    out: dict[str, Any] = {}
    for name, part in (("val", va), ("train", tr[:200])):
        y = np.array([it["label"] for it in part])
        s = network_outputs(model, torch.stack([prep.load(it) for it in part]), branches)
        margins = [f"margin_{b}" for b in branches] + (["margin_fused"] if "margin_fused" in s else [])
        out[name] = {"auc_margin": round(float(roc_auc(y, s["margin"])), 4),
                     **{f"auc_{b}": round(float(roc_auc(y, s[f"margin_{b}"])), 4) for b in branches}}
        if name == "val":
            out[name]["auc_stacked"] = round(stacked_auc(s, margins, y), 4)
            out[name]["image_ceiling_auc"] = round(float(roc_auc(
                y, [it["record"]["traits"]["image_posterior"] for it in raw_va])), 4)
    rec = {"label": a.label, "command": " ".join(sys.argv), "iterations": result.checkpoint.training["iterations"],
           "network": dict(spec.network.kwargs), "preprocessing": spec.preprocessing.to_dict(),
           "training": dataclasses.asdict(spec.training), "seed": a.seed, "n_train": len(tr), "n_val": len(va),
           "final_loss": result.history[-1]["loss"] if result.history else None,
           "seconds_train": round(result.seconds, 1), "seconds_preprocess": round(t_prep, 1), **out}
    line = json.dumps(rec)
    print(line, flush=True)
    if a.log:
        a.log.parent.mkdir(parents=True, exist_ok=True)
        with open(a.log, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
