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

import numpy as np
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


def claim_cohort_folder(out_dir: str | Path, *, generator: str, seed: int, n: int, settings: Mapping[str, Any]) -> Path:
    """``out_dir`` for a new cohort: :class:`InvalidInputError` (before anything is written) when it holds another
    cohort's ``manifest.json`` (other generator, seed, size or settings), whose record of its cases would be replaced;
    the same cohort again is allowed (deterministic: the same files)."""
    out = Path(out_dir)
    path = out / "manifest.json"
    if not path.is_file():
        return out
    try:
        with open(path, encoding="utf-8") as fh:
            old = json.load(fh)
        same = (old["generator"]["name"] == generator and int(old["seed"]) == int(seed) and int(old["n"]) == int(n)
                and old["settings"] == json.loads(json.dumps(dict(settings))))
        held = f"{old['generator']['name']}, seed {old['seed']}, {old['n']} cases"
    except (OSError, ValueError, KeyError, TypeError):
        same, held = False, "an unreadable manifest.json"
    if not same:
        raise InvalidInputError(f"{out} already holds another cohort ({held}): writing this one there would replace "
                                "its manifest; choose a new --out folder (nothing was written)")
    return out


def write_cohort(out_dir: str | Path, cases: Iterator[tuple[int, PhantomCase]], *, generator: str, version: str,
                 seed: int, n: int, settings: Mapping[str, Any], write_tissue: bool = False,
                 summarise: Callable[[list[PhantomCase]], dict[str, Any]] | None = None) -> list[Path]:
    """Write generated cases in the standard layout plus ``manifest.json``; returns the image paths.

    ``cases`` yields ``(index, case)``; each case is written as soon as it is produced, so memory
    holds one case at a time. ``summarise`` may add cohort statistics to the manifest (it receives
    the cases with their images dropped). Refuses a folder holding another cohort (:func:`claim_cohort_folder`).
    """
    out = claim_cohort_folder(out_dir, generator=generator, seed=seed, n=n, settings=settings)
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


def read_lesion_record(out_dir: str | Path, case_id: str) -> dict[str, Any]:
    """The generator's record of one case of a cohort folder (``lesions/<case_id>.json``, as :func:`write_cohort`
    writes it: ``case_id``, ``meta``, ``lesions``, ``hard_negatives``)."""
    path = Path(out_dir) / "lesions" / f"{check_case_id(case_id)}.json"
    if not path.is_file():
        raise InvalidInputError(f"no lesion record for case {case_id!r} in {str(out_dir)!r}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"lesion record {str(path)!r} is not valid JSON: {exc}") from exc


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


# --- classification cohorts ----------------------------------------------------------------------------------------


@dataclass
class ClassificationCase:
    """One synthetic case of a classification task.

    Attributes
    ----------
    case_id : identifier, only ``[A-Za-z0-9_-]``.
    images : file stem -> image (the model inputs and any extra images, e.g. a mask or a follow-up scan).
    label : class index (1 = the positive class).
    label_name : class name.
    posterior : ``P(label = 1 | latent traits drawn for this case)``, the Bayes-optimal score: its AUC over a cohort
        is the ceiling no image model can beat.
    traits : the latent traits drawn (JSON-ready).
    meta : geometry, acquisition, seed.
    """

    case_id: str
    images: dict[str, sitk.Image]
    label: int
    label_name: str
    posterior: float
    traits: dict[str, Any]
    meta: dict[str, Any]

    def record(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "label": self.label, "label_name": self.label_name,
                "posterior": self.posterior, "traits": self.traits, "meta": self.meta}


def write_classification_cohort(out_dir: str | Path, cases: Iterator[tuple[int, ClassificationCase]], *,
                                generator: str, version: str, seed: int, n: int, settings: Mapping[str, Any],
                                summarise: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
                                ) -> list[dict[str, Any]]:
    """Write a classification cohort; returns the manifest's case entries.

    Layout::

        cases/<case_id>/<stem>.nii.gz   every image of the case
        cases/<case_id>/case.json       label, posterior, latent traits, metadata
        manifest.json                   generator, settings, seed, cases (label, posterior, files + SHA-256) and a
                                        summary with the cohort's ceiling AUC (AUC of the posteriors)
    """
    from oncolabel.stats import roc_auc

    out = claim_cohort_folder(out_dir, generator=generator, seed=seed, n=n, settings=settings)
    entries: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for index, case in cases:
        cid = check_case_id(case.case_id)
        folder = out / "cases" / cid
        folder.mkdir(parents=True, exist_ok=True)
        files = {stem: atomic_write_image(img, folder / f"{stem}.nii.gz") for stem, img in case.images.items()}
        files["case"] = atomic_write_json(case.record(), folder / "case.json")
        entries.append({"case_id": cid, "index": index, "label": int(case.label), "label_name": case.label_name,
                        "posterior": float(case.posterior),
                        "files": {k: {"path": p.relative_to(out).as_posix(), "sha256": file_sha256(p)}
                                  for k, p in files.items()}})
        records.append(case.record())
    labels = [e["label"] for e in entries]
    summary: dict[str, Any] = {"cases": len(entries), "positives": int(sum(labels))}
    if len(set(labels)) == 2:
        summary["ceiling_auc"] = round(float(roc_auc(labels, [e["posterior"] for e in entries])), 4)
    if summarise is not None:
        summary.update(summarise(records))
    manifest = provenance(settings=dict(settings), generator={"name": generator, "version": version},
                          seed=int(seed), n=int(n), cases=entries, summary=summary)
    atomic_write_json(manifest, out / "manifest.json")
    return entries


def write_generated_cohort(out_dir: str | Path, n: int, seed: int, *, generate: Callable[..., ClassificationCase],
                           prefix: str, config: Any, generator: str, version: str,
                           summarise: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
                           ) -> list[dict[str, Any]]:
    """Generate and write ``n`` cases: case ``i`` is ``generate(child_seed(seed, i), config=config,
    case_id=f"{prefix}_s{seed}_{i:04d}")``, so it never depends on ``n`` (see :func:`write_classification_cohort`)."""
    from dataclasses import asdict

    from oncolabel.phantoms._ct import child_seed

    for name, value, low in (("seed", seed, 0), ("n", n, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")

    def cases() -> Iterator[tuple[int, ClassificationCase]]:
        for i in range(int(n)):
            yield i, generate(child_seed(int(seed), i), config=config, case_id=f"{prefix}_s{int(seed)}_{i:04d}")

    return write_classification_cohort(out_dir, cases(), generator=generator, version=version, seed=int(seed),
                                       n=int(n), settings=asdict(config), summarise=summarise)


def read_classification_cohort(out_dir: str | Path) -> list[dict[str, Any]]:
    """Cases of a classification cohort as training items: absolute file paths by stem, ``label``, ``case_id``,
    ``posterior`` (and the case record under ``record``)."""
    out = Path(out_dir)
    manifest = read_manifest(out)
    items = []
    for e in manifest.get("cases", []):
        item: dict[str, Any] = {stem: str(out / f["path"]) for stem, f in e["files"].items() if stem != "case"}
        item.update({"label": int(e["label"]), "case_id": e["case_id"], "posterior": float(e["posterior"])})
        case_json = out / e["files"]["case"]["path"]
        with open(case_json, encoding="utf-8") as fh:
            item["record"] = json.load(fh)
        items.append(item)
    if not items:
        raise InvalidInputError(f"{out}: the manifest lists no cases")
    return items
