"""Writing phantom cohorts: atomic file writes, per-case JSON, and a manifest with checksums.

Layout written by :func:`write_cohort` under ``out_dir``::

    images/<case_id>.nii.gz     int16 HU
    labels/<case_id>.nii.gz     uint8 ground truth, same geometry
    lesions/<case_id>.json      findings and case metadata
    tissue/<case_id>.nii.gz     uint8 tissue codes (only when asked for)
    manifest.json               generator, parameters, seed, cases, SHA-256 of every file

Every file is first written under a temporary name in its final folder and then moved into place
with :func:`os.replace`, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import SimpleITK as sitk

from oncolabel.errors import InvalidInputError
from oncolabel.provenance import file_sha256, provenance

CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class PhantomCase:
    """One synthetic case.

    Attributes
    ----------
    case_id : identifier, only ``[A-Za-z0-9_-]``.
    image : SimpleITK int16 image in HU.
    label : SimpleITK uint8 image (0 background, 1 target), same geometry as ``image``.
    lesions : one dict per labelled finding (``"labelled": True``).
    meta : case metadata (geometry, acquisition, anatomy, seed).
    hard_negatives : one dict per unlabelled mimic (``"labelled": False``).
    tissue : SimpleITK uint8 tissue-code map (:class:`oncolabel.phantoms.Tissue`), or None.
    """

    case_id: str
    image: sitk.Image
    label: sitk.Image
    lesions: list[dict[str, Any]]
    meta: dict[str, Any]
    hard_negatives: list[dict[str, Any]] = field(default_factory=list)
    tissue: sitk.Image | None = None

    def record(self) -> dict[str, Any]:
        """The JSON document written to ``lesions/<case_id>.json``."""
        return {"case_id": self.case_id, "meta": self.meta, "lesions": self.lesions,
                "hard_negatives": self.hard_negatives}


def check_case_id(case_id: str) -> str:
    """Return ``case_id`` if it is a safe file stem, else raise :class:`InvalidInputError`."""
    if not isinstance(case_id, str) or not CASE_ID_PATTERN.match(case_id):
        raise InvalidInputError(f"case id {case_id!r} must be non-empty and use only letters, digits, '_' and '-'")
    return case_id


def _tmp_name(path: Path) -> Path:
    suffix = "".join(path.suffixes)  # keep .nii.gz so SimpleITK picks the NIfTI writer
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def atomic_write_image(image: sitk.Image, path: str | Path, *, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` via a temporary file in the same folder and :func:`os.replace`."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_cohort(out_dir: str | Path, cases: Iterator[tuple[int, PhantomCase]], *, generator: str, version: str,
                 seed: int, n: int, settings: Mapping[str, Any], write_tissue: bool = False,
                 summarise: Callable[[list[PhantomCase]], dict[str, Any]] | None = None) -> list[Path]:
    """Write generated cases in the standard layout plus ``manifest.json``; returns the image paths.

    ``cases`` yields ``(index, case)``; each case is written as soon as it is produced, so memory
    holds one case at a time. ``summarise`` may add cohort statistics to the manifest (it receives
    the cases with their images dropped).
    """
    out = Path(out_dir)
    folders = {"images": out / "images", "labels": out / "labels", "lesions": out / "lesions"}
    if write_tissue:
        folders["tissue"] = out / "tissue"
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    light: list[PhantomCase] = []
    image_paths: list[Path] = []
    for index, case in cases:
        cid = check_case_id(case.case_id)
        files = {"image": atomic_write_image(case.image, folders["images"] / f"{cid}.nii.gz"),
                 "label": atomic_write_image(case.label, folders["labels"] / f"{cid}.nii.gz"),
                 "lesions": atomic_write_json(case.record(), folders["lesions"] / f"{cid}.json")}
        if write_tissue and case.tissue is not None:
            files["tissue"] = atomic_write_image(case.tissue, folders["tissue"] / f"{cid}.nii.gz")
        image_paths.append(files["image"])
        entries.append({
            "case_id": cid, "index": index,
            "n_lesions": len(case.lesions), "n_hard_negatives": len(case.hard_negatives),
            "z_region": case.meta.get("z_region"),
            "files": {k: {"path": p.relative_to(out).as_posix(), "sha256": file_sha256(p)} for k, p in files.items()},
        })
        light.append(PhantomCase(case.case_id, None, None, case.lesions, case.meta, case.hard_negatives))  # type: ignore[arg-type]
    manifest = provenance(settings=dict(settings), generator={"name": generator, "version": version},
                          seed=int(seed), n=int(n), cases=entries)
    if summarise is not None:
        manifest["summary"] = summarise(light)
    atomic_write_json(manifest, out / "manifest.json")
    return image_paths


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """Load ``manifest.json`` of a cohort folder."""
    path = Path(out_dir) / "manifest.json"
    if not path.is_file():
        raise InvalidInputError(f"no manifest.json in {str(out_dir)!r}")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def verify_cohort(out_dir: str | Path) -> list[str]:
    """Paths (relative to ``out_dir``) whose SHA-256 no longer matches the manifest; empty when intact."""
    out = Path(out_dir)
    bad = []
    for entry in read_manifest(out)["cases"]:
        for info in entry["files"].values():
            p = out / info["path"]
            if not p.is_file() or file_sha256(p) != info["sha256"]:
                bad.append(info["path"])
    return bad
