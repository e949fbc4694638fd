"""``oncolabel score ...``: risk scores that are numbers, not images (research use only).

* ``oncolabel score pannet-ln IMAGE MASK [--size-cm X] [--json FILE]`` - the RDP score of one case.
* ``oncolabel score pannet-ln-study --train DIR --external DIR --out report.html`` - the whole RDP-score study
  (ten learners under one CV, frozen model, one HTML report).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.cli._common import check_output_paths, write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``score`` and its sub-commands."""
    parser = subparsers.add_parser("score", help="risk scores from an image and a mask (research use only)",
                                   description=f"Risk scores ({RESEARCH_USE_ONLY}).")
    sub = parser.add_subparsers(dest="score", metavar="SCORE", required=True)
    one = sub.add_parser("pannet-ln", help="lymph-node metastasis risk of a non-functional pancreatic NET (RDP score)",
                         description="RDP score of one case: CT (NIfTI/NRRD or a DICOM folder) and its tumour mask "
                                     "(label 1, same grid). Prints the score, risk group and suggestion.")
    one.add_argument("image", metavar="IMAGE")
    one.add_argument("mask", metavar="MASK")
    one.add_argument("--roi", metavar="NAME", help="the tumour's structure (RTSTRUCT) or segment (DICOM SEG) when MASK "
                                                   "is one (default: its only one, or its only GTV)")
    one.add_argument("--size-cm", type=float, default=None,
                     help="tumour size in cm (default: maximum 3D diameter of the mask)")
    one.add_argument("--model", metavar="FILE", help="RDP model file (default: the shipped model)")
    one.add_argument("--json", metavar="FILE", help="write the full result (contributions, provenance) as JSON")
    one.set_defaults(func=run_pannet_ln)
    study = sub.add_parser("pannet-ln-study", help="run the RDP-score study and write one HTML report",
                           description="Compare ten learners under one patient-level CV on the training centre, "
                                       "freeze glmBoost, validate internally and externally, write one report.")
    study.add_argument("--train", type=Path, required=True, metavar="DIR", help="training-centre cohort folder")
    study.add_argument("--external", type=Path, required=True, metavar="DIR", help="external-centre cohort folder")
    study.add_argument("--out", type=Path, required=True, metavar="HTML", help="report file")
    study.add_argument("--export-model", type=Path, default=None, metavar="PT",
                       help="also write the frozen model (.pt) and its JSON card")
    study.add_argument("--summary-json", type=Path, default=None, metavar="FILE", help="headline numbers as JSON")
    study.add_argument("--seed", type=int, default=0)
    study.add_argument("--folds", type=int, default=5)
    study.add_argument("--jobs", type=int, default=2, help="processes for radiomics extraction")
    study.add_argument("--cnn-iterations", type=int, default=None, help="CNN training iterations (task default)")
    study.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of the report")
    study.add_argument("--cache", type=Path, default=None, metavar="DIR",
                       help="keep radiomics tables here (keyed by content) so a re-run skips extraction")
    study.set_defaults(func=run_study_command)


def run_pannet_ln(args: argparse.Namespace) -> int:
    from oncolabel.inference import default_checkpoint_path
    from oncolabel.scoring.rdp import RdpModel
    from oncolabel.cli._common import read_tumour_mask
    from oncolabel.io import read_image
    from oncolabel.tasks import get_task

    check_output_paths({"--json": args.json}, [args.image, args.mask, args.model])
    path = args.model or default_checkpoint_path(get_task("pannet_ln"))
    model = RdpModel.load(path)
    image = read_image(args.image)
    mask = read_tumour_mask(args.mask, args.image, image, args.roi)
    result = model.predict(image, mask.mask, size_cm=args.size_cm)
    payload = result.to_json()
    payload.update({"image": str(args.image), "mask": str(args.mask), "mask_read_as": mask.to_json()})
    if args.json:
        write_json(payload, args.json)
    top = ", ".join(f"{c['feature']} {c['contribution_log_odds']:+.2f}" for c in payload["top_contributions"][:3])
    print(f"RDP score {result.score:.3g} ({result.risk_group} risk, threshold {result.threshold:.3g}); "
          f"size {result.size_cm:.1f} cm ({result.size_source}); suggestion: {result.recommendation}. "
          f"Top contributions: {top}. Model {result.model_version}.")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def run_study_command(args: argparse.Namespace) -> int:
    from oncolabel.scoring.study import StudySettings, run_study

    check_output_paths({"--out": args.out, "--export-model": args.export_model, "--summary-json": args.summary_json},
                       [])
    settings = StudySettings(seed=args.seed, n_folds=args.folds, n_jobs=args.jobs, cnn_iterations=args.cnn_iterations,
                             n_boot=args.n_boot)
    result = run_study(args.train, args.external, settings=settings, report=args.out, export_model=args.export_model,
                       progress=lambda msg: print(msg, file=sys.stderr, flush=True), cache=args.cache)
    summary = result.summary()
    if args.summary_json:
        write_json(summary, args.summary_json)
    for k, v in result.auc.items():
        ceil = result.cohorts[k]["ceiling_auc"]
        c = v["combined"]
        print(f"{k:9s} AUC {c['auc']:.3f} (95% CI {c['ci_low']:.3f}-{c['ci_high']:.3f})"
              + (f"  ceiling {ceil:.3f}  gap {ceil - c['auc']:+.3f}" if ceil is not None else ""))
    print(f"report: {args.out}" + (f"; model: {args.export_model}" if args.export_model else "") + f" ({RESEARCH_USE_ONLY})")
    return 0
