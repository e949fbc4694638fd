"""``oncolabel fit-filter bone-metastasis ...``: fit the false-positive filter of a segmentation model's components.

The filter (:class:`oncolabel.candidates.ComponentFilter`) learns from the model's own predictions on labelled
cases the model never trained on, and is stored in a copy of the checkpoint (``--out``); the network weights are
unchanged. The report (``--out`` with ``.json``) holds the case-grouped cross-validated AUC.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import sys
from pathlib import Path

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.cli._common import write_json
from oncolabel.errors import InvalidInputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-filter", help="fit a segmentation model's false-positive component filter")
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    seg = tasks.add_parser("bone-metastasis", help="filter for the bone-metastasis model's predicted components",
                           description="COHORT folders hold images/ and labels/ (the layout `oncolabel phantoms` "
                                       "writes) of cases the model did not train on.")
    seg.add_argument("--model", metavar="CKPT", help="model whose components are filtered (default: the shipped one)")
    seg.add_argument("--cohort", required=True, nargs="+", metavar="DIR", help="labelled cohort folder(s)")
    seg.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write: the model plus the filter")
    seg.add_argument("--threshold", type=float, default=0.15,
                     help="drop components whose metastasis probability is below this (default 0.15)")
    seg.add_argument("--C", type=float, default=0.3, help="inverse L2 regularisation strength (default 0.3)")
    seg.add_argument("--folds", type=int, default=5, help="case-grouped folds of the reported AUC (default 5)")
    seg.add_argument("--seed", type=int, default=0)
    seg.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    seg.set_defaults(func=run, spec_name="bone_metastasis")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import SimpleITK as sitk

    from oncolabel.candidates import fit_component_filter
    from oncolabel.checkpoint import save_checkpoint
    from oncolabel.cli.train import cohort_items
    from oncolabel.inference import SegmentationPredictor
    from oncolabel.io import check_same_geometry, read_image

    if not 0.0 <= args.threshold <= 1.0:
        raise InvalidInputError(f"--threshold {args.threshold}: must be within 0..1")
    predictor = SegmentationPredictor(args.model, task=args.spec_name, device=args.device)
    model_path = predictor.checkpoint.path
    if model_path is not None and Path(args.out).resolve() == Path(model_path).resolve():
        raise InvalidInputError(f"--out {args.out} is the input model: write the filtered model to a new file")
    items = cohort_items(args.cohort)
    if not items:
        raise InvalidInputError(f"no labelled cases in {', '.join(args.cohort)}")
    tables = []
    for k, item in enumerate(items, start=1):
        image, label = read_image(item["image"]), read_image(item["label"])
        check_same_geometry(image, label, what=f"label {item['label']}")
        tables.append(predictor.component_table(image, sitk.GetArrayViewFromImage(label) > 0))
        print(f"[{k}/{len(items)}] {Path(item['image']).name}: {len(tables[-1][1])} component(s)",
              file=sys.stderr, flush=True)
    flt, report = fit_component_filter(tables, C=args.C, threshold=args.threshold, folds=args.folds, seed=args.seed,
                                       patients=[item.get("patient_id") for item in items])
    stored = {**flt.to_dict(), "fitted_on_model": predictor.checkpoint.sha256, "fitted_on": list(args.cohort),
              "cv_auc": report["cv_auc"],
              "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(sys.argv)}
    ckpt = dataclasses.replace(predictor.checkpoint, component_filter=stored, path=None, sha256=None)
    out = save_checkpoint(ckpt, args.out)
    write_json({"notice": RESEARCH_USE_ONLY, "checkpoint": str(out), "sha256": ckpt.sha256,
                "model": str(model_path), "model_sha256": predictor.checkpoint.sha256, "report": report,
                "filter": stored, "n_cases": len(items)}, Path(args.out).with_suffix(".json"))
    pct = {k: "n/a" if report[k] is None else f"{report[k]:.0%}" for k in ("cv_kept_true", "cv_kept_false")}
    auc = "n/a" if report["cv_auc"] is None else f"{report['cv_auc']:.3f}"
    print(f"{out}: model {ckpt.version} with a component filter fitted on {report['n_components']} components "
          f"of {len(items)} cases ({report['n_true']} true); cross-validated AUC {auc}; at threshold "
          f"{args.threshold} it keeps {pct['cv_kept_true']} of true and {pct['cv_kept_false']} of "
          "false-positive components")
    return 0
