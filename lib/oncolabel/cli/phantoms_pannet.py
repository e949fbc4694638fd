"""``oncolabel phantoms pannet ...``: pancreatic-phase CT cohorts with a PanNET, its mask and LN status."""

from __future__ import annotations

import argparse
from pathlib import Path


def _pannet(args: argparse.Namespace) -> int:
    from oncolabel.phantoms.io import read_manifest
    from oncolabel.phantoms.pannet import PannetPhantomConfig, write_pannet_cohort

    cfg = PannetPhantomConfig(centre=args.centre, matrix=args.matrix)
    paths = write_pannet_cohort(args.out, args.n, args.seed, config=cfg)
    s = read_manifest(args.out)["summary"]
    ceiling = s.get("ceiling_auc")
    print(f"wrote {len(paths)} centre-{args.centre} cases to {Path(args.out)}: {s['ln_positive']} LN+, "
          f"{s['size_le_2cm']} tumours <= 2 cm; ceiling AUC "
          f"{'n/a' if ceiling is None else f'{ceiling:.3f}'}; clinical table {Path(args.out) / 'clinical.csv'}")
    return 0


def register_phantom(task_subparsers: argparse._SubParsersAction) -> None:
    """Add ``pannet`` to ``oncolabel phantoms``."""
    p = task_subparsers.add_parser(
        "pannet", help="pancreatic-phase CT crops with a non-functional PanNET, tumour mask and LN status",
        description="Write DIR/images, DIR/labels (tumour masks), DIR/lesions (latent traits and the posterior "
                    "P(LN+ | traits)), DIR/clinical.csv and DIR/manifest.json (with the cohort's ceiling AUC). "
                    "Case i depends only on (seed, i, centre).")
    p.add_argument("--n", type=int, required=True, help="number of cases")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--seed", type=int, required=True, help="cohort seed (non-negative integer)")
    p.add_argument("--centre", choices=("A", "B"), default="A",
                   help="acquisition profile: A (2 mm slices, smooth kernel) or B (3 mm, sharp kernel, noisier)")
    p.add_argument("--matrix", type=int, default=128, help="in-plane size of the crop in pixels (default 128)")
    p.set_defaults(func=_pannet)
