"""``oncolabel infer renal-mass | pet-lymphoma | hn-response``: calibrated classification with a heat map.

Every command prints one line (prediction, probabilities, model version, research-use notice), optionally writes the
JSON result (``--json``: ``probabilities`` (class -> calibrated probability, summing to 1), ``prediction``, model
version and provenance, ``notice``) and the Grad-CAM heat map on the input image's grid (``--heatmap``, float32 in
[0, 1]). Inputs are NIfTI / NRRD files or folders holding one DICOM series. Errors are one line on stderr and exit
status 1 (see :mod:`oncolabel.cli`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from oncolabel.cli._common import check_output_paths, write_json
from oncolabel.errors import InvalidInputError
from oncolabel.io import IMAGE_SUFFIXES, image_suffix, read_image, write_image


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="FILE", help="write the result (probabilities, prediction, provenance) as JSON")
    p.add_argument("--heatmap", metavar="FILE", help="write the Grad-CAM heat map (.nii.gz / .nrrd) on the input grid")
    p.add_argument("--model", metavar="CKPT", help="checkpoint (default: the shipped model)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))


def register_infer(task_subparsers: argparse._SubParsersAction) -> None:
    """Add the classification tasks to ``oncolabel infer``."""
    rm = task_subparsers.add_parser(
        "renal-mass", help="small renal mass on four-phase CT: benign vs malignant",
        description="INPUTS: a folder holding the four lesion-centred phase images (files or DICOM folders named "
                    "after their phase: unenhanced / corticomedullary / nephrographic / excretory, or UE / CM / NG / "
                    "EX, or DICOM series whose description says it, e.g. 'Arterial', 'Non contrast'; other files are "
                    "ignored), or the four files (named after their phase, or in that order). "
                    "All phases must show the same region; phases on other grids than the corticomedullary phase "
                    "(slices, pixels, extent) are resampled onto it by their physical coordinates (said in a warning). "
                    "The heat map is written on the corticomedullary grid.")
    rm.add_argument("inputs", nargs="+", metavar="PHASES_DIR_OR_FILES")
    rm.add_argument("--allow-missing-phases", action="store_true",
                    help="classify with the phases present (the model fitted on exactly those phases) instead of "
                         "stopping when one is missing")
    rm.add_argument("--age", type=float, help="age in years (with --sex and --size-mm: the multivariable model)")
    rm.add_argument("--sex", choices=("M", "F"), help="sex")
    rm.add_argument("--size-mm", type=float, help="largest diameter of the mass in mm")
    _common(rm)
    rm.set_defaults(func=run_renal_mass, spec_name="renal_mass")

    pet = task_subparsers.add_parser(
        "pet-lymphoma", help="whole-body FDG-PET: sarcoidosis vs malignant lymphoma",
        description="PET: a folder with one PET DICOM series (SUVbw computed from its headers: decay-corrected, "
                    "body weight), or a NIfTI/NRRD file that declares SUVbw. Without the header fields SUV needs, "
                    "the command stops unless --suv-scale is given. The heat map is the Grad-CAM of the frontal and "
                    "lateral MIPs back-projected onto the PET grid.")
    pet.add_argument("input", metavar="PET")
    pet.add_argument("--suv-scale", type=float, metavar="FACTOR",
                     help="stored value x FACTOR = SUV (overrides the DICOM headers; required for files that do not "
                          "declare SUV)")
    _common(pet)
    pet.set_defaults(func=run_pet_lymphoma, spec_name="pet_lymphoma")

    hn = task_subparsers.add_parser(
        "hn-response", help="head-and-neck cancer: tumour shrinkage during radiotherapy from the pre-treatment CT",
        description="CT: the pre-treatment CT; MASK: the primary tumour (GTV): a mask on the CT's grid (value > 0; "
                    "NIfTI/NRRD or a Slicer .seg.nrrd), or the planning RT Structure Set (RTSTRUCT) or a DICOM SEG "
                    "of the CT, with --roi naming the structure unless it holds one, or one GTV.")
    hn.add_argument("input", metavar="CT")
    hn.add_argument("mask", metavar="MASK")
    hn.add_argument("--roi", metavar="NAME", help="the tumour's structure (RTSTRUCT) or segment (DICOM SEG) in MASK")
    _common(hn)
    hn.set_defaults(func=run_hn_response, spec_name="hn_response")


def _check_outputs(args: argparse.Namespace, inputs: Iterable[str | Path]) -> None:
    if args.heatmap and not image_suffix(args.heatmap):
        raise InvalidInputError(f"--heatmap {args.heatmap!r}: use a {', '.join(IMAGE_SUFFIXES)} file name")
    check_output_paths({"--heatmap": args.heatmap, "--json": args.json}, inputs)


def _run(args: argparse.Namespace, images: Mapping[str, Any], inputs: Mapping[str, str], *,
         extra: Mapping[str, Any] | None = None, **predict: Any) -> int:
    from oncolabel.classification import ClassifierPredictor

    predictor = ClassifierPredictor(args.model, task=args.spec_name, device=args.device)
    result = predictor.predict(images, heatmaps=bool(args.heatmap), **predict)
    payload = result.to_json()
    payload["inputs"] = dict(inputs)
    payload.update(extra or {})
    if args.heatmap:
        primary = predictor.preprocessing.primary_input
        name = primary if primary in result.heatmaps else sorted(result.heatmaps)[0]
        write_image(result.heatmaps[name], args.heatmap)
        payload["heatmap"] = {"path": str(args.heatmap), "grid_of": name, "method": "Grad-CAM"}
    if args.json:
        write_json(payload, args.json)
    print(result.summary())
    if result.measurement_error:  # stdout keeps its one line; what the reader must know goes to stderr
        print(f"warning: image measurements not made ({result.measurement_error}); the model without them was used",
              file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def run_renal_mass(args: argparse.Namespace) -> int:
    from oncolabel.tasks.renal_mass import PHASES, resolve_phase_inputs

    paths = resolve_phase_inputs(args.inputs)
    _check_outputs(args, paths.values())
    missing = [p for p in PHASES if p not in paths]
    if missing and not args.allow_missing_phases:
        raise InvalidInputError(f"missing CT phase(s): {', '.join(missing)} (found: "
                                f"{', '.join(f'{k}={v.name}' for k, v in paths.items()) or 'none'}); give all four "
                                "phases, or --allow-missing-phases to use the model of the phases present")
    clinical = [args.age, args.sex, args.size_mm]
    if any(v is not None for v in clinical) and not all(v is not None for v in clinical):
        raise InvalidInputError("give --age, --sex and --size-mm together (the multivariable model needs all three)")
    covariates = None
    if all(v is not None for v in clinical):
        covariates = {"age": args.age, "sex_male": 1.0 if args.sex == "M" else 0.0, "size_mm": args.size_mm}
    images = {p: read_image(paths[p]) if p in paths else None for p in PHASES}
    return _run(args, images, {k: str(v) for k, v in paths.items()}, covariates=covariates,
                allow_missing=bool(missing))


def run_pet_lymphoma(args: argparse.Namespace) -> int:
    from oncolabel.pet import read_suv

    _check_outputs(args, [args.input])
    image, suv = read_suv(args.input, suv_scale=args.suv_scale)
    return _run(args, {"image": image}, {"pet": str(args.input)}, extra={"suv": suv})


def run_hn_response(args: argparse.Namespace) -> int:
    from oncolabel.cli._common import read_tumour_mask

    _check_outputs(args, [args.input, args.mask])
    ct = read_image(args.input)
    mask = read_tumour_mask(args.mask, args.input, ct, args.roi)
    return _run(args, {"image": ct, "mask": mask.mask}, {"ct": str(args.input), "mask": str(args.mask)},
                extra={"mask_read_as": mask.to_json()})
