"""``oncolabel phantoms renal-mass | pet-lymphoma | hn-response``: classification cohorts with their ceiling AUC.

Each writes ``DIR/cases/<case>/`` (the images, ``case.json`` with the label, the Bayes posterior and the latent
traits) and ``DIR/manifest.json`` (settings, seed, SHA-256 of every file, and a summary with the cohort's ceiling
AUC, the AUC of the posteriors, which no image model can beat). Case i depends only on (seed, i).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

_COMMON_HELP = "Case i depends only on (seed, i), never on N. Synthetic data; research use only."


def _writer(name: str) -> Callable[..., Any]:
    if name == "renal-mass":
        from oncolabel.phantoms.renal_mass import write_renal_mass_cohort
        return write_renal_mass_cohort
    if name == "pet-lymphoma":
        from oncolabel.phantoms.pet_lymphoma import write_pet_lymphoma_cohort
        return write_pet_lymphoma_cohort
    from oncolabel.phantoms.hn_response import write_hn_response_cohort
    return write_hn_response_cohort


def _write(args: argparse.Namespace) -> int:
    from oncolabel.phantoms.io import read_manifest

    entries = _writer(args.phantom)(args.out, args.n, args.seed)
    summary = read_manifest(args.out)["summary"]
    extra = "".join(f", {k.replace('_', ' ')} {v:.3f}" for k, v in summary.items()
                    if k.endswith("auc") and k != "ceiling_auc" and isinstance(v, float))
    ceiling = summary.get("ceiling_auc")
    print(f"wrote {len(entries)} cases to {Path(args.out)} ({summary.get('positives', 0)} of class 1); ceiling AUC "
          f"{'n/a (one class only)' if ceiling is None else f'{ceiling:.3f}'}{extra}; manifest "
          f"{Path(args.out) / 'manifest.json'}")
    return 0


def register_phantom(task_subparsers: argparse._SubParsersAction) -> None:
    """Add the classification tasks' cohorts to ``oncolabel phantoms``."""
    helps = {
        "renal-mass": ("lesion-centred four-phase CT of a small renal mass (benign vs malignant)",
                       "Writes per case unenhanced/corticomedullary/nephrographic/excretory.nii.gz and mask.nii.gz."),
        "pet-lymphoma": ("whole-body FDG-PET in SUVbw, 4 mm voxels (sarcoidosis vs lymphoma)",
                         "Writes per case image.nii.gz (SUVbw, declared in the header) and lesions.nii.gz (region "
                         "codes); the manifest summary holds the region table with Fisher's exact test."),
        "hn-response": ("neck CT with a primary tumour, before and during radiotherapy (shrinkage above median)",
                        "Writes per case image.nii.gz + mask.nii.gz (pre-treatment) and followup.nii.gz + "
                        "followup_mask.nii.gz."),
    }
    for name, (short, desc) in helps.items():
        p = task_subparsers.add_parser(name, help=short, description=f"{desc} {_COMMON_HELP}")
        p.add_argument("--n", type=int, required=True, help="number of cases")
        p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
        p.add_argument("--seed", type=int, required=True, help="cohort seed (non-negative integer)")
        p.set_defaults(func=_write)
