"""AI-assisted reading on a phantom test cohort: readers alone vs the AI vs readers with the AI (slice level).

The AI's slice calls come from the model's predictions (``--pred``) against the phantom truth (``--truth``);
the readers are *simulated* (:mod:`oncolabel.reading`, documented model), then analysed by
:func:`oncolabel.stats.reader_study` exactly as real reads would be (per-reader sensitivity/specificity with Wilson
CIs, McNemar tests, pooled estimates, Obuchowski-Rockette). Slice rules as in :mod:`oncolabel.evaluation`.

    python bench/bone_metastasis_reader_study.py --pred PRED_DIR --truth COHORT_DIR [--readers 4] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
import SimpleITK as sitk

from oncolabel.evaluation import slice_table
from oncolabel.io import list_images, read_image
from oncolabel.reading import simulate_reads
from oncolabel.stats import reader_study


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    truth, pred = list_images(args.truth, subfolder="labels"), list_images(args.pred)
    ys, ais = [], []
    for cid in sorted(truth):
        t = read_image(truth[cid])
        tp, pp, _ = slice_table(sitk.GetArrayFromImage(read_image(pred[cid])) > 0,
                                sitk.GetArrayViewFromImage(t) > 0, spacing=t.GetSpacing())
        ys.append(tp)
        ais.append(pp)
    y, ai = np.concatenate(ys).astype(int), np.concatenate(ais).astype(int)
    sim = simulate_reads(y, ai, n_readers=args.readers, random_state=args.seed)
    res = reader_study(y, sim.unaided, sim.aided, ai, readers=list(sim.readers))
    print(f"{y.size} slices ({y.sum()} with metastasis) from {len(truth)} cases; {sim.notice}")
    for cond, est in res.pooled.items():
        print(f"  {cond:8s} sensitivity {est.sensitivity.estimate:.3f} [{est.sensitivity.ci_low:.3f}, "
              f"{est.sensitivity.ci_high:.3f}]  specificity {est.specificity.estimate:.3f}")
    for r in res.readers:
        c = r.comparisons[0]
        print(f"  {r.reader}: sensitivity alone {r.unaided.sensitivity.estimate:.3f} -> with AI "
              f"{r.aided.sensitivity.estimate:.3f} ({c.measure}, {c.first} vs {c.second}: McNemar p {c.test.p_value:.3g})")


if __name__ == "__main__":
    main()
