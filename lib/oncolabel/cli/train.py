"""``oncolabel train <task> ...``: train or fine-tune a task's model headless."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oncolabel.cli._common import check_output_paths, write_json
from oncolabel.errors import InvalidInputError
from oncolabel.io import list_images


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a task's model from labelled cases")
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    seg = tasks.add_parser("bone-metastasis", help="train the DeepLabV3+ on CT + label pairs",
                           description="DATA folders hold images/ and labels/ with matching case ids "
                                       "(the layout `oncolabel phantoms` writes).")
    seg.add_argument("--data", required=True, nargs="+", metavar="DIR", help="training cohort folder(s)")
    seg.add_argument("--val", nargs="*", default=[], metavar="DIR", help="validation cohort folder(s)")
    seg.add_argument("--labelled-only", action="store_true",
                     help="use the cases that have a label and skip (and count) the others, e.g. a PACS import "
                          "whose readers annotated part of the series (default: an image without a label is an error)")
    seg.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.pt)")
    seg.add_argument("--init", metavar="CKPT", help="warm-start from this checkpoint")
    seg.add_argument("--iterations", type=int)
    seg.add_argument("--batch-size", type=int)
    seg.add_argument("--learning-rate", type=float)
    seg.add_argument("--validate-every", type=int)
    seg.add_argument("--seed", type=int, default=0)
    seg.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    seg.add_argument("--spacing-mm", type=float, metavar="MM",
                     help="working pixel size for this run instead of the task's (an intermediate stage: the "
                          "predictor only serves checkpoints with the task's preprocessing)")
    seg.add_argument("--init-other-preprocessing", action="store_true",
                     help="allow --init to come from other preprocessing (e.g. another working pixel size)")
    seg.add_argument("--lesion-size-weight", type=float, metavar="W",
                     help="weight of the extra cross-entropy on small lesion cross-sections (default: the task's, 1; "
                          "0: Dice + cross-entropy alone)")
    seg.add_argument("--lesion-sampling", type=float, metavar="F",
                     help="share of the lesion-slice samples drawn lesion-balanced: a lesion uniformly, then its small "
                          "cross-sections (ends, small lesions) favoured (default: the task's; 0: lesion slices "
                          "uniformly per volume)")
    seg.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                     help="bf16: autocast forward passes (several times faster on AMX CPUs and recent GPUs); "
                          "auto: bf16 where the hardware runs it natively")
    seg.set_defaults(func=run_segmentation, spec_name="bone_metastasis")


def cohort_items(folders: list[str], *, labelled_only: bool = False) -> list[dict[str, str]]:
    """Training items of cohort folders (images in ``images/`` or the folder itself, ``labels/`` with matching case
    ids), with each case's patient id where the folder records one (``pacs_series.json`` of ``oncolabel
    pacs-import``), so that the trainer refuses a validation cohort that shares a patient with the training one.
    An image without a label is an error, or skipped and counted on stderr with ``labelled_only``."""
    import json

    from oncolabel.pacs import FolderStore

    items = []
    for folder in folders:
        if not (Path(folder) / "labels").is_dir():
            raise InvalidInputError(f"{folder}: no labels/ folder (a cohort holds its images, in images/ or the folder "
                                    "itself, and their labels as labels/<case id>.nii.gz, as `oncolabel phantoms` "
                                    "and `oncolabel pacs-import --labels` write them)")
        images = list_images(folder, subfolder="images")
        labels = list_images(folder, subfolder="labels")
        missing = sorted(set(images) - set(labels))
        if missing and not labelled_only:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise InvalidInputError(f"{folder}: no label for {', '.join(missing[:5])}{more} (--labelled-only: use "
                                    "the labelled cases)")
        if missing:
            print(f"warning: {folder}: {len(missing)} of {len(images)} images have no label and are not used",
                  file=sys.stderr)
            images = {c: p for c, p in images.items() if c in labels}
            if not images:
                raise InvalidInputError(f"{folder}: no image has a label")
        manifest = Path(folder) / FolderStore.MANIFEST
        try:
            records = json.loads(manifest.read_text()) if manifest.is_file() else {}
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{manifest}: unreadable ({exc})") from exc
        for c in sorted(images):
            item = {"image": str(images[c]), "label": str(labels[c])}
            if records.get(c, {}).get("patient_id"):
                item["patient_id"] = str(records[c]["patient_id"])
            items.append(item)
    return items


def run_segmentation(args: argparse.Namespace) -> int:
    from oncolabel.checkpoint import load_checkpoint, save_checkpoint
    from oncolabel.errors import InvalidInputError
    from oncolabel.tasks import get_task
    from oncolabel.tasks.base import spec_variant
    from oncolabel.training import Trainer

    spec = get_task(args.spec_name)
    # the checkpoint and its JSON report beside it (model.pt -> model.json) may not replace the warm-start model
    check_output_paths({"--out": args.out, "the --out report": Path(args.out).with_suffix(".json")}, [args.init])
    if args.spacing_mm is not None:
        if args.spacing_mm <= 0:
            raise InvalidInputError(f"--spacing-mm {args.spacing_mm}: must be > 0")
        spec = spec_variant(spec, preprocessing={"spacing_mm": args.spacing_mm})
    if args.lesion_size_weight is not None:
        if args.lesion_size_weight < 0:
            raise InvalidInputError(f"--lesion-size-weight {args.lesion_size_weight}: must be >= 0")
        spec = spec_variant(spec, training={"lesion_size_weight": args.lesion_size_weight})
    if args.lesion_sampling is not None:
        if not 0 <= args.lesion_sampling <= 1:
            raise InvalidInputError(f"--lesion-sampling {args.lesion_sampling}: must be in [0, 1]")
        spec = spec_variant(spec, training={"lesion_sampling_fraction": args.lesion_sampling})
    train_items = cohort_items(args.data, labelled_only=args.labelled_only)
    val_items = cohort_items(args.val, labelled_only=args.labelled_only) if args.val else []
    init = load_checkpoint(args.init, task=spec.name) if args.init else None

    def progress(rec: dict) -> None:
        print(" ".join(f"{k}={v}" for k, v in rec.items()), file=sys.stderr, flush=True)

    trainer = Trainer(spec, iterations=args.iterations, batch_size=args.batch_size, learning_rate=args.learning_rate,
                      validate_every=args.validate_every, init=init, device=args.device, seed=args.seed,
                      progress=progress, save_best_to=args.out if val_items else None,
                      precision=args.precision, init_other_preprocessing=args.init_other_preprocessing)
    result = trainer.fit(train_items, val_items)
    result.checkpoint.training.update({"command": " ".join(sys.argv), "train_data": args.data, "val_data": args.val})
    out = save_checkpoint(result.checkpoint, args.out)
    write_json({"checkpoint": str(out), "sha256": result.checkpoint.sha256, "metrics": result.checkpoint.metrics,
                "training": result.checkpoint.training, "history": result.history},
               Path(args.out).with_suffix(".json"))
    print(f"{out}: model {result.checkpoint.version}, best iteration {result.best_iteration}, "
          f"{result.seconds:.0f} s, metrics {result.checkpoint.metrics}")
    return 0
