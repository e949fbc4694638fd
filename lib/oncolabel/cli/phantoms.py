"""``oncolabel phantoms <task> ...``: write synthetic cohorts with ground truth.

``bone-metastasis`` is defined here; the other tasks register theirs from their own modules.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from oncolabel.cli._common import register_extras
from oncolabel.phantoms import BoneMetastasisPhantomConfig, read_manifest, write_bone_metastasis_cohort

#: modules defining ``register_phantom(task_subparsers)`` for the other tasks' phantom cohorts
_EXTRA_PHANTOM_MODULES = ("oncolabel.cli.phantoms_pannet", "oncolabel.cli.phantoms_classifiers")


# CLI option -> (config field, how the option's value becomes the field's value)
_OPTIONS = {
    "z_mm": ("z_mm", lambda v: (v, v)),
    "thickness": ("thickness_mm", tuple),
    "spacing": ("spacing_mm", float),
    "lesion_free_fraction": ("lesion_free_fraction", float),
    "max_lesions": ("max_lesions", int),
    "noise_sd": ("noise_sd_hu", lambda v: (v, v)),
    "regions": ("z_regions", tuple),
    "hard_negatives_mean": ("hard_negatives_mean", float),
}


def _config_from_args(args: argparse.Namespace) -> BoneMetastasisPhantomConfig:
    changes: dict = {"matrix": args.matrix}
    for option, (name, convert) in _OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            changes[name] = convert(value)
    return dataclasses.replace(BoneMetastasisPhantomConfig(), **changes)


def _bone_metastasis(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)
    paths = write_bone_metastasis_cohort(args.out, args.n, args.seed, config=cfg, write_tissue=args.write_tissue)
    summary = read_manifest(args.out).get("summary", {})
    print(f"wrote {len(paths)} cases to {Path(args.out)}: "
          f"{summary.get('cases', len(paths)) - summary.get('lesion_free_cases', 0)} with metastases "
          f"({summary.get('lesions', 0)} lesions), {summary.get('lesion_free_cases', 0)} without; "
          f"manifest {Path(args.out) / 'manifest.json'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``phantoms`` and its sub-commands to the top-level parser."""
    parser = subparsers.add_parser("phantoms", help="generate synthetic CT cohorts with ground truth",
                                   description="Generate synthetic CT cohorts with exact labels.")
    sub = parser.add_subparsers(dest="phantom", metavar="TASK", required=True)
    bm = sub.add_parser(
        "bone-metastasis", help="torso CT with spinal bone metastases (lytic, blastic, mixed) and mimics",
        description="Write DIR/images, DIR/labels, DIR/lesions and DIR/manifest.json. Case i depends only on "
                    "(seed, i), never on N.")
    bm.add_argument("--n", type=int, required=True, help="number of cases")
    bm.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    bm.add_argument("--seed", type=int, required=True, help="cohort seed (non-negative integer)")
    bm.add_argument("--matrix", type=int, default=512, help="in-plane size in pixels (default 512)")
    bm.add_argument("--z-mm", type=float, default=None, help="craniocaudal extent in mm (default: 120-160 per case)")
    bm.add_argument("--thickness", type=float, nargs="+", default=None, metavar="MM",
                    help="slice thickness(es) to draw from (default 1 1.25 2 2.5 3 5)")
    bm.add_argument("--spacing", type=float, default=None, metavar="MM",
                    help="exact in-plane pixel size (default: field of view 307-461 mm over the matrix)")
    bm.add_argument("--lesion-free-fraction", type=float, default=None, help="share of cases without metastases (0.4)")
    bm.add_argument("--max-lesions", type=int, default=None, help="most metastases in one case (6)")
    bm.add_argument("--noise-sd", type=float, default=None, metavar="HU", help="fixed noise SD (default 8-25 HU)")
    bm.add_argument("--regions", nargs="+", default=None, metavar="REGION",
                    choices=("thoracic", "thoracolumbar", "lumbar", "pelvic"),
                    help="regions to centre volumes on (default: all four)")
    bm.add_argument("--hard-negatives-mean", type=float, default=None,
                    help="mean number of unlabelled mimics per case (2.5)")
    bm.add_argument("--write-tissue", action="store_true", help="also write DIR/tissue/<case>.nii.gz tissue-code maps")
    bm.set_defaults(func=_bone_metastasis)
    register_extras(sub, _EXTRA_PHANTOM_MODULES, "register_phantom")  # other tasks' `phantoms <task>`
