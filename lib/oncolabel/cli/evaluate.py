"""``oncolabel evaluate <task> ...``: compare predictions with ground truth."""

from __future__ import annotations

import argparse

from oncolabel.cli._common import write_json
from oncolabel.errors import InvalidInputError
from oncolabel.io import list_images, read_image


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate predictions against ground truth")
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    seg = tasks.add_parser(
        "bone-metastasis", help="slice-wise, lesion-wise and voxel-wise metrics",
        description="Slice-wise sensitivity/PPV, lesion-wise sensitivity and false positives per scan, Dice; per "
                    "case and pooled with 95%% CIs. Definitions: see oncolabel.evaluation. Files are paired by "
                    "case id (file name without extension); a phantom cohort folder's labels/ is used for --truth.")
    seg.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted label files")
    seg.add_argument("--truth", required=True, metavar="DIR", help="folder of truth label files (or a cohort folder)")
    seg.add_argument("--out", metavar="FILE", help="write the JSON report here")
    seg.add_argument("--min-area-mm2", type=float, default=10.0, help="minimum in-slice area of a positive slice")
    seg.add_argument("--min-overlap", type=float, default=0.1, help="fraction of a lesion that must be covered")
    seg.add_argument("--large-mm", type=float, default=10.0, help="size threshold of the 'large lesion' subgroup")
    seg.set_defaults(func=run_segmentation)


def run_segmentation(args: argparse.Namespace) -> int:
    from oncolabel.evaluation import evaluate_images
    from oncolabel.provenance import provenance

    truth = list_images(args.truth, subfolder="labels")
    pred = list_images(args.pred)
    missing = sorted(set(truth) - set(pred))
    if missing:
        raise InvalidInputError(f"no prediction for {len(missing)} truth case(s): {', '.join(missing[:5])}"
                                f"{'...' if len(missing) > 5 else ''}")
    pairs = [(cid, read_image(pred[cid]), read_image(truth[cid])) for cid in sorted(truth)]
    ev = evaluate_images(pairs, min_area_mm2=args.min_area_mm2, min_overlap=args.min_overlap, large_mm=args.large_mm)
    report = ev.to_dict()
    report["provenance"] = provenance(settings=dict(ev.settings), pred_dir=str(args.pred), truth_dir=str(args.truth))
    if args.out:
        write_json(report, args.out)
    print(f"{len(pairs)} cases: {ev.summary()}")
    return 0
