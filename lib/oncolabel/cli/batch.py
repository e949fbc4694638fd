"""``oncolabel batch TASK CASES --out DIR``: ``oncolabel infer TASK`` (``score pannet-ln``) for every case of a
cohort, in one process.

Each case runs exactly the single-case command (same reading, checks, outputs and provenance), so a cohort's
results are those ``infer`` gives case by case, without a process start per case. CASES is a CSV (a ``case``
column and the task's input columns, paths relative to the CSV's folder) or a folder:

* ``bone-metastasis``, ``pet-lymphoma``: each image file or subfolder (one DICOM series, or one image file named
  ``image``, ``ct`` or ``pet``) is a case;
* ``renal-mass``: each subfolder (the four phase files or DICOM folders, named after their phase) is a case;
* ``hn-response``, ``pannet-ln``: each subfolder holds the CT (``image`` or ``ct``) and the tumour mask (``mask``,
  ``tumour`` or ``gtv``; or ``rtstruct.dcm`` / ``seg.dcm``, read as ``--roi`` reads them, a CSV's ``roi`` column
  naming the structure), or is a planning export (the CT's slices with one RTSTRUCT or SEG file beside them), or a
  folder with ``images/`` and ``labels/`` paired by case id.

A phantom cohort's ``cases/`` (classifiers) or ``images/`` (bone metastasis) folder is used when present.

DIR receives ``<case>.json`` per case (written last: a case whose JSON exists is done and is skipped when the command
runs again, so nothing is replaced; one done with another model, or whose input files or values changed since, is
refused, not mixed in), the label or heat map files, ``summary.csv`` (one row per case: status, the one-line result
or the reason it was refused, and the main figures) and ``batch.json`` (the run's settings, and each done case's
input checksums). A case that cannot be read is refused by itself and the others go on; the exit status is
non-zero when any case was refused.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.cli._common import write_json
from oncolabel.errors import InvalidInputError, OncoLabelError
from oncolabel.io import atomic_path, case_id_of, image_suffix
from oncolabel.provenance import package_versions, path_sha256

#: infer sub-command -> (input columns of a CSV, optional columns -> the infer option they fill)
TASK_COLUMNS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "bone-metastasis": (("input",), {}),
    "pet-lymphoma": (("input",), {"suv_scale": "--suv-scale"}),
    "renal-mass": (("unenhanced", "corticomedullary", "nephrographic", "excretory"),
                   {"age": "--age", "sex": "--sex", "size_mm": "--size-mm"}),
    "hn-response": (("ct", "mask"), {"roi": "--roi"}),
    "pannet-ln": (("image", "mask"), {"size_cm": "--size-cm", "roi": "--roi"}),
}
#: tasks whose single-case command is ``oncolabel score`` (the others: ``oncolabel infer``)
SCORE_TASKS = ("pannet-ln",)
_CASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@dataclass
class Case:
    """One row of a cohort: its id, input paths (in the single-case command's order) and optional values."""

    case_id: str
    inputs: tuple[str, ...]
    options: dict[str, str]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="run `infer TASK` over every case of a cohort (research use only)",
                       description=__doc__.split("\n\n", 1)[1].replace("``", ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=sorted(TASK_COLUMNS), metavar="TASK", help=", ".join(sorted(TASK_COLUMNS)))
    p.add_argument("cases", metavar="CASES", help="a CSV of cases or a folder (see above)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; existing results are kept)")
    p.add_argument("--model", metavar="CKPT", help="checkpoint (default: the task's shipped model)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="(not pannet-ln: it runs on the CPU)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="bone-metastasis only")
    p.add_argument("--format", default=".nii.gz", choices=(".nii.gz", ".nrrd", ".seg.nrrd"),
                   help="label file format (bone-metastasis; default .nii.gz)")
    p.add_argument("--heatmaps", action="store_true", help="classifiers: write <case>_heatmap.nii.gz too")
    p.add_argument("--allow-missing-phases", action="store_true", help="renal-mass: as `infer renal-mass`")
    p.set_defaults(func=run_batch)


def read_cases(task: str, source: str | Path, *, exclude: Path | None = None) -> list[Case]:
    """The cases of a CSV or a folder (module docstring), in file order / name order; ``exclude`` (the output
    folder, when it lies in the cohort folder) is not a case.

    Raises:
        InvalidInputError: a missing source or column, an unsafe or repeated case id, a folder with no case.
    """
    src = Path(source)
    if not src.exists():
        raise InvalidInputError(f"{src}: no such file or folder")
    columns, optional = TASK_COLUMNS[task]
    if src.is_file():
        with open(src, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        missing = [c for c in ("case", *columns) if rows and c not in rows[0]]
        if not rows or missing:
            raise InvalidInputError(f"{src}: a CSV with the columns case, {', '.join(columns)} (optional: "
                                    f"{', '.join(optional) or 'none'}) and one row per case is needed"
                                    + (f"; missing {', '.join(missing)}" if rows else "; it holds no row"))
        cases = [Case((r["case"] or "").strip(), tuple(str(src.parent / r[c].strip()) if r[c] and r[c].strip()
                                                       else "" for c in columns),
                      {o: r[o].strip() for o in optional if r.get(o) and r[o].strip()}) for r in rows]
    elif task in ("hn-response", "pannet-ln") and (src / "images").is_dir() and (src / "labels").is_dir():
        masks = {case_id_of(p): p for p in _visible(src / "labels") if image_suffix(p)}
        cases = [Case(_safe_id(case_id_of(p)), (str(p), str(masks.get(case_id_of(p), ""))), {})
                 for p in _visible(src / "images") if image_suffix(p)]
    elif task in ("hn-response", "pannet-ln"):
        cases = [Case(_safe_id(d.name), _ct_and_mask(d), {})
                 for d in _visible(src / "cases" if (src / "cases").is_dir() else src, exclude) if d.is_dir()]
    else:
        root = next((src / d for d in ("cases", "images") if (src / d).is_dir()), src)
        cases = [Case(_safe_id(case_id_of(p) if p.is_file() else p.name), (_single_input(task, p),), {})
                 for p in _visible(root, exclude) if p.is_dir() or (task != "renal-mass" and image_suffix(p))]
    if not cases:
        raise InvalidInputError(f"{src}: holds no case for {task}")
    seen: set[str] = set()
    for c in cases:
        if not _CASE.match(c.case_id):
            raise InvalidInputError(f"case id {c.case_id!r}: use letters, digits, '_', '-' and '.' only (it names "
                                    "the output files)")
        if c.case_id in seen:
            raise InvalidInputError(f"case id {c.case_id!r} appears twice")
        seen.add(c.case_id)
    return cases


_CT_NAMES, _MASK_NAMES = ("image", "ct"), ("mask", "tumour", "tumor", "gtv", "rtstruct", "seg")


def _visible(folder: Path, exclude: Path | None = None) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")
                  and (exclude is None or p.resolve() != exclude.resolve()))


def _named_file(folder: Path, names: tuple[str, ...]) -> str:
    """The one image file (or DICOM folder) of ``folder`` whose name is one of ``names`` ("" when none)."""
    found = [p for p in _visible(folder) if (case_id_of(p).lower() in names and (p.is_dir() or image_suffix(p)))
             or (p.suffix.lower() == ".dcm" and p.stem.lower() in names)]  # an RTSTRUCT or DICOM SEG file
    return str(found[0]) if len(found) == 1 else ""


def _ct_and_mask(folder: Path) -> tuple[str, str]:
    """A case folder's CT and tumour mask: named files or folders (:data:`_CT_NAMES`, :data:`_MASK_NAMES`), or a
    radiotherapy planning export (the CT's slices and one RTSTRUCT or DICOM SEG file, e.g. ``RS.<uid>.dcm``, in one
    folder: the folder is the CT, whose reading leaves the structure set aside, and that file the mask)."""
    ct, mask = _named_file(folder, _CT_NAMES), _named_file(folder, _MASK_NAMES)
    if not ct and not mask:
        from oncolabel.masks import dicom_object_modality

        objects = [p for p in _visible(folder) if p.is_file() and dicom_object_modality(p) in ("RTSTRUCT", "SEG")]
        if len(objects) == 1:
            return str(folder), str(objects[0])
    return ct, mask


def _single_input(task: str, entry: Path) -> str:
    """A case entry as the single-case command's input: a file, a renal case's folder, or for the one-image tasks a
    subfolder holding one image file named after it (a phantom cohort's ``cases/<id>/image.nii.gz``), else the
    subfolder itself (a DICOM series)."""
    if entry.is_file() or task == "renal-mass":
        return str(entry)
    return _named_file(entry, _CT_NAMES + ("pet",)) or str(entry)


def _safe_id(name: str) -> str:
    """A case id from a file or folder name (a DICOM folder may be named with spaces or UIDs): other characters
    become '_'."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name).lstrip("._-")[:128] or "case"


def case_argv(task: str, case: Case, out: Path, args: argparse.Namespace) -> list[str]:
    """The ``oncolabel infer`` arguments of one case (its outputs in ``out``)."""
    empty = [c for c, v in zip(TASK_COLUMNS[task][0], case.inputs) if not v]
    if empty and not (task == "renal-mass" and args.allow_missing_phases):
        raise InvalidInputError(f"no {', '.join(empty)} given")
    argv = ["score" if task in SCORE_TASKS else "infer", task, *[v for v in case.inputs if v]]
    if task == "bone-metastasis":
        argv += [str(out / f"{case.case_id}{args.format}"), "--precision", args.precision]
    elif args.heatmaps:
        argv += ["--heatmap", str(out / f"{case.case_id}_heatmap.nii.gz")]
    if task == "renal-mass" and args.allow_missing_phases:
        argv.append("--allow-missing-phases")
    for name, value in case.options.items():
        argv += [TASK_COLUMNS[task][1][name], value]
    argv += ["--json", str(out / f"{case.case_id}.json")]
    if task not in SCORE_TASKS:
        argv += ["--device", args.device]
    return argv + (["--model", args.model] if args.model else [])


def case_fingerprint(case: Case) -> dict[str, Any]:
    """What a case's result was computed from: each input's SHA-256 (a folder's content; "" when not given) and the
    case's values (age, size, ...). Paths are not part of it: a cohort moved elsewhere is the same cohort.

    Raises:
        InvalidInputError: an input that does not exist.
    """
    missing = [v for v in case.inputs if v and not Path(v).exists()]
    if missing:
        raise InvalidInputError(f"{missing[0]}: no such file or folder")
    return {"sha256": [path_sha256(v) if v else "" for v in case.inputs], "values": dict(sorted(case.options.items()))}


def _changed(task: str, case: Case, before: dict[str, Any], now: dict[str, Any]) -> str:
    """Which of a case's inputs or values differ from those its result was computed from ("" when none)."""
    columns = TASK_COLUMNS[task][0]
    names = columns if len(columns) == len(case.inputs) else ("the case folder",) * len(case.inputs)
    what = [n for n, a, b in zip(names, before.get("sha256", []), now["sha256"]) if a != b]
    what += [k for k in sorted(set(before.get("values", {})) | set(now["values"]))
             if before.get("values", {}).get(k) != now["values"].get(k)]
    return ", ".join(what)


def _read_ledger(path: Path) -> dict[str, Any]:
    """The input checksums of the cases an earlier run in the same folder did (none when it has no batch.json)."""
    if not path.exists():
        return {}
    try:
        ledger = json.loads(path.read_text()).get("inputs", {})
    except (ValueError, AttributeError) as exc:
        raise InvalidInputError(f"{path}: not a batch record ({exc}); use another --out") from exc
    return ledger if isinstance(ledger, dict) else {}


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    if "lesion_count" in result:
        return {"lesion_count": result["lesion_count"], "total_volume_ml": result["total_volume_ml"]}
    if "score" in result:
        return {k: result.get(k, "") for k in ("score", "risk_group", "size_cm", "recommendation")}
    return {"prediction": result.get("prediction", ""),
            **{f"p_{k}": round(float(v), 6) for k, v in result.get("probabilities", {}).items()}}


def _write_summary(rows: list[dict[str, Any]], dest: Path) -> None:
    fields = ["case", "status", "result", "warnings"]
    for row in rows:
        fields += [k for k in row if k not in fields]
    with atomic_path(dest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def run_batch(args: argparse.Namespace) -> int:
    from oncolabel.cli import build_parser

    from oncolabel.inference import default_checkpoint_path
    from oncolabel.provenance import file_sha256
    from oncolabel.tasks import get_task

    cases = read_cases(args.task, args.cases, exclude=Path(args.out))
    model_sha = file_sha256(args.model or default_checkpoint_path(get_task(args.task.replace("-", "_"))))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parser = build_parser()
    ledger = _read_ledger(out / "batch.json")
    rows: list[dict[str, Any]] = []

    def record() -> None:  # after every case, so that an interrupted run leaves an exact account
        refused = [r["case"] for r in rows if r["status"] == "refused"]
        write_json({"notice": RESEARCH_USE_ONLY, "task": args.task, "cases": str(args.cases), "n_cases": len(rows),
                    "refused": refused, "model": args.model or "shipped", "model_sha256": model_sha,
                    "device": args.device, "software": package_versions(("oncolabel", "torch", "monai", "SimpleITK")),
                    "inputs": ledger}, out / "batch.json")

    for k, case in enumerate(cases, 1):
        result_json = out / f"{case.case_id}.json"
        row: dict[str, Any] = {"case": case.case_id}
        try:
            fingerprint = case_fingerprint(case)
        except (InvalidInputError, OSError) as exc:
            fingerprint, row = None, {**row, "status": "refused", "result": str(exc), "warnings": 0}
        if fingerprint is not None and result_json.exists():
            result = json.loads(result_json.read_text())
            prov = result.get("provenance", {})
            model = prov.get("model")
            done_by = prov.get("model_sha256") or (model.get("sha256") if isinstance(model, dict) else None)
            changed = _changed(args.task, case, ledger[case.case_id], fingerprint) if case.case_id in ledger else ""
            if done_by != model_sha:  # a cohort's results come from one model: not mixed, not replaced
                row.update(status="refused", warnings=0,
                           result=f"{result_json.name} holds a result of another model ({str(done_by)[:12]}, this "
                                  f"run's is {model_sha[:12]}): use another --out, or remove it to redo the case")
            elif changed:  # the result no longer describes the case's files: not kept as if it did, not replaced
                row.update(status="refused", warnings=0,
                           result=f"{changed} changed since {result_json.name} was written: remove it to redo the "
                                  "case, or use another --out")
            else:
                row.update(status="already done", result="", warnings=len(result.get("warnings", [])),
                           **_figures(result))
        elif fingerprint is not None:
            printed, warned = io.StringIO(), io.StringIO()
            try:
                case_args = parser.parse_args(case_argv(args.task, case, out, args))
                with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(warned):
                    case_args.func(case_args)
                result = json.loads(result_json.read_text())
                lines = printed.getvalue().strip().splitlines()
                row.update(status="done", result=lines[-1] if lines else "",
                           warnings=len(result.get("warnings", [])), **_figures(result))
                ledger[case.case_id] = fingerprint
            except OncoLabelError as exc:
                row.update(status="refused", result=str(exc), warnings=0)
        rows.append(row)
        _write_summary(rows, out / "summary.csv")
        record()
        print(f"[{k}/{len(cases)}] {case.case_id}: {row['status']}" + (f": {row['result']}" if row["result"] else ""))
    refused = [r["case"] for r in rows if r["status"] == "refused"]
    if refused:
        raise InvalidInputError(f"{len(refused)} of {len(rows)} case(s) refused ({', '.join(refused[:5])}"
                                f"{', ...' if len(refused) > 5 else ''}); the reasons are in {out / 'summary.csv'}")
    return 0
