"""Experiment: the RDP-score study on phantom cohorts, external AUC against the external ceiling AUC.

Generates (or reuses) a training-centre cohort (A) and an external cohort (B), runs
``oncolabel score pannet-ln-study`` in-process and prints, per analysed set, the RDP AUC, the ceiling AUC of that
set (AUC of the generator's own posterior) and the gap, plus the wall time of each phase. Goal of the emulation:
external AUC within 0.05 of the external ceiling.

    python bench/pannet_study.py --work /tmp/pannet-bench [--n-train 300 --n-external 200] \
        [--seed-train 101 --seed-external 202] [--export-model lib/oncolabel/models/pannet_ln.pt] [--out results.json]

Research use only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from oncolabel.phantoms import read_manifest
from oncolabel.phantoms.pannet import PannetPhantomConfig, write_pannet_cohort
from oncolabel.scoring.study import StudySettings, run_study


def cohort(folder: Path, n: int, seed: int, centre: str) -> float:
    """Write the cohort unless it is already there; return the seconds spent."""
    if (folder / "manifest.json").is_file() and read_manifest(folder).get("n") == n:
        return 0.0
    t = time.perf_counter()
    write_pannet_cohort(folder, n, seed, config=PannetPhantomConfig(centre=centre))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder for cohorts, cache, report")
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--n-external", type=int, default=200)
    ap.add_argument("--seed-train", type=int, default=101)
    ap.add_argument("--seed-external", type=int, default=202)
    ap.add_argument("--seed", type=int, default=0, help="seed of splits, CNN and learners")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--export-model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = ap.parse_args()
    a, b = args.work / f"A{args.n_train}_s{args.seed_train}", args.work / f"B{args.n_external}_s{args.seed_external}"
    secs = {"cohort_A": cohort(a, args.n_train, args.seed_train, "A"),
            "cohort_B": cohort(b, args.n_external, args.seed_external, "B")}
    res = run_study(a, b, settings=StudySettings(seed=args.seed, n_jobs=args.jobs), report=args.work / "report.html",
                    export_model=args.export_model, cache=args.work / "cache",
                    progress=lambda msg: print(f"  {msg}", flush=True))
    secs.update(res.seconds)
    print(f"{'set':10s} {'n':>4s} {'LN+':>4s} {'AUC':>6s} {'95% CI':>13s} {'ceiling':>8s} {'gap':>7s}")
    for k, c in res.cohorts.items():
        r = res.auc[k]["combined"]
        gap = None if c["ceiling_auc"] is None else c["ceiling_auc"] - r["auc"]
        print(f"{k:10s} {c['n']:4d} {c['ln_positive']:4d} {r['auc']:6.3f} {r['ci_low']:6.3f}-{r['ci_high']:.3f} "
              f"{c['ceiling_auc'] or float('nan'):8.3f} {gap if gap is not None else float('nan'):+7.3f}")
    print("learners (training CV AUC):", ", ".join(f"{r['method']} {r['cv_auc']:.3f}" for r in res.comparison))
    print("seconds:", ", ".join(f"{k} {v:.0f}" for k, v in secs.items()))
    if args.out:
        args.out.write_text(json.dumps({**res.summary(), "seconds": secs, "subgroups": res.subgroups,
                                        "delong": res.delong}, indent=2, default=str))


if __name__ == "__main__":
    main()
