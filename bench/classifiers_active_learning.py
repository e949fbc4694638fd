"""Simulated labelling campaign: uncertainty (entropy) vs random sampling for a classification task.

A phantom cohort is split (patient level, stratified) into a pool and a held-out test set. Both campaigns start from
the same random, class-balanced set of labelled cases; each round trains the task's network on the labelled cases
with the generic trainer exactly as the server's train task does (round 0 from scratch, later rounds warm-started from
the previous round's model), scores the test set (AUC) and the unlabelled pool, and asks the strategy for the next
``--batch`` cases: ``uncertainty`` takes those with the largest binary entropy of the model's probability (the
server's ``<task>_uncertainty`` strategy), ``random`` takes a random draw (``<task>_random``). The output is the AUC
after each round and the number of labels each strategy needed to reach ``--target`` AUC.

    python bench/classifiers_active_learning.py --task pet_lymphoma --cohort /tmp/pl300 --target 0.85 \
        --out results/pet_lymphoma_al.json

With ``--head-only`` (a task whose head uses image measurements, e.g. renal_mass) each round refits the task's
measurement head on the labelled cases instead of training the network (:func:`head_campaign`).
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

from oncolabel.classification import CachedPreprocessing, binary_entropy, checkpoint_model, network_outputs
from oncolabel.phantoms.io import read_classification_cohort
from oncolabel.stats import PatientStratifiedKFold, roc_auc
from oncolabel.tasks import get_task
from oncolabel.training import Trainer


def campaign(spec: Any, items: list[dict], pool: np.ndarray, test: np.ndarray, start: np.ndarray, *, strategy: str,
             rounds: int, batch: int, first_iterations: int, round_iterations: int, seed: int,
             x: torch.Tensor) -> list[dict[str, Any]]:
    y = np.array([it["label"] for it in items])
    labelled = list(start)
    rng = np.random.default_rng(seed + 1)
    history, ckpt = [], None
    for r in range(rounds + 1):
        t0 = time.time()
        trainer = Trainer(spec, iterations=first_iterations if ckpt is None else round_iterations, init=ckpt,
                          learning_rate=None if ckpt is None else spec.training.finetune_learning_rate,
                          seed=seed + r)
        ckpt = trainer.fit([items[i] for i in labelled]).checkpoint
        model = checkpoint_model(ckpt)
        margin = network_outputs(model, x, spec.preprocessing.branch_names)["margin"]
        auc = float(roc_auc(y[test], margin[test]))
        history.append({"round": r, "labels": len(labelled), "test_auc": round(auc, 4),
                        "positives": int(y[labelled].sum()), "seconds": round(time.time() - t0, 1)})
        print(strategy, history[-1], flush=True)
        if r == rounds:
            break
        unlabelled = np.array(sorted(set(pool.tolist()) - set(labelled)))
        if strategy == "uncertainty":
            p = 1.0 / (1.0 + np.exp(-margin[unlabelled]))
            order = np.argsort(-binary_entropy(p), kind="stable")
            chosen = unlabelled[order[:batch]]
        else:
            chosen = rng.choice(unlabelled, size=min(batch, unlabelled.size), replace=False)
        labelled += [int(i) for i in chosen]
    return history


def head_campaign(spec: Any, scores: dict[str, np.ndarray], y: np.ndarray, pool: np.ndarray, test: np.ndarray,
                  start: np.ndarray, *, strategy: str, rounds: int, batch: int, seed: int) -> list[dict[str, Any]]:
    """The same campaign for the task's measurement head alone (``--head-only``): each round fits the head the task
    ships on its image measurements (``postprocessing.measurements``, quadratic and penalised as the spec says) on
    the labelled cases; no network is trained. What a campaign needs when the measurements carry the model."""
    from oncolabel.classification import fit_logistic

    post = spec.postprocessing
    names = list(post.measurements)
    quad = names if post.quadratic_measurements else []
    labelled = list(start)
    rng = np.random.default_rng(seed + 1)
    history = []
    for r in range(rounds + 1):
        head = fit_logistic({k: v[labelled] for k, v in scores.items()}, y[labelled], names, method="stacking",
                            quadratic=quad, c=post.measurement_c)
        p = head.predict(scores)
        history.append({"round": r, "labels": len(labelled), "test_auc": round(float(roc_auc(y[test], p[test])), 4),
                        "positives": int(y[labelled].sum())})
        if r == rounds:
            break
        unlabelled = np.array(sorted(set(pool.tolist()) - set(labelled)))
        if strategy == "uncertainty":
            chosen = unlabelled[np.argsort(-binary_entropy(p[unlabelled]), kind="stable")[:batch]]
        else:
            chosen = rng.choice(unlabelled, size=min(batch, unlabelled.size), replace=False)
        labelled += [int(i) for i in chosen]
    return history


def labels_to_reach(history: list[dict[str, Any]], target: float) -> int | None:
    return next((h["labels"] for h in history if h["test_auc"] >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="pet_lymphoma")
    ap.add_argument("--cohort", required=True, type=Path)
    ap.add_argument("--target", type=float, default=0.85, help="test AUC to reach")
    ap.add_argument("--start", type=int, default=20, help="labelled cases at round 0 (class-balanced)")
    ap.add_argument("--batch", type=int, default=20, help="cases labelled per round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--first-iterations", type=int, default=150)
    ap.add_argument("--round-iterations", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--head-only", action="store_true",
                    help="campaign of the task's measurement head alone (no network training; see head_campaign)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = get_task(args.task)
    if args.head_only and not spec.postprocessing.measurements:
        ap.error(f"--head-only: task {args.task} has no measurement head")
    raw = read_classification_cohort(args.cohort)
    items = [{**{k: it[k] for k in spec.preprocessing.inputs}, "label": it["label"]} for it in raw]
    y = np.array([it["label"] for it in items])
    groups = [it["case_id"] for it in raw]
    pool, test = next(PatientStratifiedKFold(5, random_state=args.seed).split(None, y, groups=groups))
    rng = np.random.default_rng(args.seed)
    start = np.concatenate([rng.choice(pool[y[pool] == c], size=args.start // 2, replace=False) for c in (0, 1)])
    t0 = time.time()
    image_ceiling = [raw[i]["record"]["traits"].get("image_posterior", raw[i]["posterior"]) for i in test]
    results: dict[str, Any] = {"task": args.task, "command": " ".join(sys.argv), "pool": int(pool.size),
                               "test": int(test.size), "test_positives": int(y[test].sum()), "target_auc": args.target,
                               "ceiling_auc_test": round(float(roc_auc(y[test], [raw[i]["posterior"] for i in test])),
                                                         4),
                               "image_ceiling_auc_test": round(float(roc_auc(y[test], image_ceiling)), 4),
                               "mode": "measurement head only" if args.head_only else "network"}
    if args.head_only:
        from oncolabel.classification import measure_items

        scores = measure_items(spec, items)
    else:
        prep = CachedPreprocessing(spec.preprocessing)
        cspec = dataclasses.replace(spec, preprocessing=prep)
        x = torch.stack([prep.load(it) for it in items])
    for strategy in ("uncertainty", "random"):
        if args.head_only:
            hist = head_campaign(spec, scores, y, pool, test, start, strategy=strategy, rounds=args.rounds,
                                 batch=args.batch, seed=args.seed)
        else:
            hist = campaign(cspec, items, pool, test, start, strategy=strategy, rounds=args.rounds,
                            batch=args.batch, first_iterations=args.first_iterations,
                            round_iterations=args.round_iterations, seed=args.seed, x=x)
        results[strategy] = {"history": hist, "labels_to_target": labels_to_reach(hist, args.target)}
    results["seconds"] = round(time.time() - t0, 1)
    print(json.dumps({k: v for k, v in results.items()}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
