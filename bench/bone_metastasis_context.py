"""Experiment: 2D (one slice) vs 2.5D (slice + one neighbour each side) input for bone-metastasis DeepLabV3+.

Trains both variants with the same seed, data and budget, evaluates both on a validation cohort and prints the
slice-wise / lesion-wise figures and the time per training iteration. The winner is the task spec's default.

    python bench/bone_metastasis_context.py --train DIR --val DIR --iterations 1200 [--out results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import SimpleITK as sitk

from oncolabel.cli.train import cohort_items
from oncolabel.evaluation import evaluate_images
from oncolabel.inference import SegmentationPredictor
from oncolabel.io import read_image
from oncolabel.tasks import get_task
from oncolabel.training import Trainer


def variant(context: int):
    spec = get_task("bone_metastasis")
    prep = dataclasses.replace(spec.preprocessing, context=context)
    net = dataclasses.replace(spec.network, kwargs={**spec.network.kwargs, "in_channels": prep.in_channels})
    return dataclasses.replace(spec, preprocessing=prep, network=net)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--val", nargs="+", required=True)
    ap.add_argument("--iterations", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()
    train, val = cohort_items(args.train), cohort_items(args.val)
    rows = {}
    for context in (1, 0):
        spec = variant(context)
        t = time.time()
        res = Trainer(spec, iterations=args.iterations, seed=args.seed).fit(train)
        secs = time.time() - t
        pred = SegmentationPredictor.from_model(_model(spec, res.checkpoint), spec)
        pairs = [(it["image"], pred.predict(read_image(it["image"])).label, read_image(it["label"])) for it in val]
        ev = evaluate_images(pairs)
        p = ev.to_dict()["pooled"]
        rows["2.5D" if context else "2D"] = {
            "slice_sensitivity": p["slice_sensitivity"]["value"], "slice_ppv": p["slice_ppv"]["value"],
            "lesion_sensitivity": p["lesion_sensitivity"]["value"],
            "lesion_sensitivity_large": p["lesion_sensitivity_large"]["value"],
            "fp_per_scan": p["false_positives_per_scan"], "dice": p["dice_pooled"],
            "train_seconds": round(secs, 1), "seconds_per_iteration": round(secs / args.iterations, 3)}
        print(f"{'2.5D' if context else '2D'}: {ev.summary()} ({secs:.0f} s training)", flush=True)
    print(json.dumps(rows, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"iterations": args.iterations, "seed": args.seed, "train": args.train, "val": args.val,
                       "results": rows}, fh, indent=2)


def _model(spec, ckpt):
    model = spec.network.build()
    model.load_state_dict(ckpt.state_dict)
    return model.eval()


if __name__ == "__main__":
    main()
