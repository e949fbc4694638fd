"""``oncolabel report``: a study report from prediction (and survival) CSV files."""

from __future__ import annotations

import argparse
from pathlib import Path

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.cli._common import check_output_paths

_EPILOG = """\
predictions.csv: patient_id, y_true (1 = positive), one or more score_<model> columns (higher = more
likely positive; probabilities in [0, 1] also get calibration and decision curves), optional subset.
survival.csv: patient_id, time (>= 0), event (1 = event, 0 = censored), group.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    p = subparsers.add_parser(
        "report", help="statistics report (ROC, DeLong, calibration, decision curves, survival)",
        description=f"Build a study report ({RESEARCH_USE_ONLY}).", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--predictions", type=Path, help="predictions CSV")
    p.add_argument("--survival", type=Path, help="survival CSV")
    p.add_argument("--out", type=Path, required=True,
                   help="output file (html, pdf) or folder (png)")
    p.add_argument("--format", choices=("html", "pdf", "png"), default=None,
                   help="output format (default: from the --out suffix, else html)")
    p.add_argument("--title", default="OncoLabel study report")
    p.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level (default 0.05)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--time-unit", default="", help="label of the survival time axis, e.g. months")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the CSVs, build the report, write it, print where."""
    from oncolabel.errors import InvalidInputError
    from oncolabel.report import (
        ReportSettings,
        build_report,
        read_predictions_csv,
        read_survival_csv,
        write_report,
    )

    if args.predictions is None and args.survival is None:
        raise InvalidInputError("give --predictions, --survival, or both")
    check_output_paths({"--out": args.out}, [args.predictions, args.survival])
    fmt = args.format or (args.out.suffix.lstrip(".").lower() if args.out.suffix.lower() in (".html", ".pdf")
                          else "html")
    inputs = {k: v for k, v in (("predictions", args.predictions), ("survival", args.survival)) if v is not None}
    settings = ReportSettings(alpha=args.alpha, n_boot=args.n_boot, seed=args.seed, time_unit=args.time_unit)
    report = build_report(
        predictions=read_predictions_csv(args.predictions) if args.predictions else None,
        survival=read_survival_csv(args.survival) if args.survival else None,
        title=args.title, settings=settings, inputs=inputs)
    for path in write_report(report, args.out, fmt):
        print(path)
    print(RESEARCH_USE_ONLY)
    return 0
