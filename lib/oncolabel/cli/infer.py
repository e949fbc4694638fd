"""``oncolabel infer <task> ...``: headless inference."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oncolabel.cli._common import check_output_paths, register_extras, write_json
from oncolabel.errors import InvalidInputError
from oncolabel.io import LABEL_SUFFIXES, image_suffix, read_image, require_3d, write_label


#: modules defining ``register_infer(task_subparsers)`` for non-segmentation tasks
_EXTRA_INFER_MODULES = ("oncolabel.cli.infer_classifiers",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="run a task's model on an image (research use only)")
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    seg = tasks.add_parser("bone-metastasis", help="segment bone metastases on a CT",
                           description="Segment bone metastases on a CT. INPUT: NIfTI/NRRD file or a folder holding "
                                       "one DICOM CT series. OUTPUT: .nii.gz or .nrrd label (0 background, "
                                       "1 metastasis) on INPUT's exact grid, or .seg.nrrd: the same as a 3D Slicer "
                                       "segmentation (segment 'metastasis'); for a DICOM series also .dcm: a "
                                       "DICOM SEG referencing the series' instances.")
    seg.add_argument("input", metavar="INPUT")
    seg.add_argument("output", metavar="OUTPUT")
    seg.add_argument("--model", metavar="CKPT", help="checkpoint (default: the shipped model)")
    seg.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    seg.add_argument("--json", metavar="FILE", help="write lesion list and provenance as JSON")
    seg.add_argument("--batch-size", type=int, default=None,
                     help="slices per forward pass (default 8 on a CPU, 32 on a GPU); speed and memory only")
    seg.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                     help="network arithmetic (default auto: bf16 autocast where the hardware runs it natively, "
                          "else fp32); the two differ by a few voxels per case, native bf16 is about 1.5x faster "
                          "(docs/bone_metastasis.md); recorded in the --json provenance")
    seg.set_defaults(func=run_segmentation, spec_name="bone_metastasis")
    register_extras(tasks, _EXTRA_INFER_MODULES, "register_infer")  # other task families' `infer <task>`


def run_segmentation(args: argparse.Namespace) -> int:
    from oncolabel.inference import SegmentationPredictor

    out = Path(args.output)
    as_seg = out.name.lower().endswith(".dcm")
    if as_seg and not Path(args.input).is_dir():
        raise InvalidInputError(f"OUTPUT {out.name!r}: a DICOM SEG needs a DICOM series as INPUT (a folder); for "
                                f"{Path(args.input).name!r} use a .nii.gz or .nrrd file name")
    if not as_seg and image_suffix(out) not in LABEL_SUFFIXES:
        raise InvalidInputError(f"OUTPUT {out.name!r}: use a .nii.gz, .nii, .nrrd or .seg.nrrd (3D Slicer "
                                "segmentation) file name (or .dcm for a DICOM SEG of a DICOM series)")
    check_output_paths({"OUTPUT": out, "--json": args.json}, [args.input])
    image = require_3d(read_image(args.input), what=f"INPUT {args.input}")
    headers = None
    if as_seg:  # before any inference: a series the SEG cannot reference is refused now
        from oncolabel.dicom_seg import segmentation_frames, series_headers

        headers = series_headers(args.input)
        segmentation_frames(image, headers)
    predictor = SegmentationPredictor(args.model, task=args.spec_name, device=args.device, batch_size=args.batch_size,
                                      precision=args.precision)
    result = predictor.predict(image)
    payload = result.to_json()
    payload["input"] = str(args.input)
    payload["output"] = str(out)
    if as_seg:
        _write_seg(result, headers, out, args.spec_name)
    else:
        write_label(result.label, out, segments=_segment_names(args.spec_name))
    if args.json:
        write_json(payload, args.json)
    print(f"{out}: {result.summary()}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _segment_names(spec_name: str) -> dict[int, str]:
    from oncolabel.tasks import get_task

    return {int(v): name for name, v in get_task(spec_name).labels.items() if int(v) != 0}


def _write_seg(result, headers, out: Path, spec_name: str) -> None:
    from oncolabel.dicom_seg import segmentation_dataset
    from oncolabel.io import atomic_path

    seg = segmentation_dataset(result.label, headers, segments=_segment_names(spec_name),
                               manual=False, algorithm=f"OncoLabel {spec_name}",
                               version=str(result.provenance.get("model_version", "?")))
    with atomic_path(out) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
