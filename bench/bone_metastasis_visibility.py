"""Which metastasis slices does a bone-metastasis model find? Detection of each truth-positive slice against what
the CT shows of it.

Reads existing predictions (e.g. the CLI outputs of ``bench/bone_metastasis_eval.sh``) and their phantom cohorts;
runs no model. Every truth-positive slice (the evaluation's rule: >= ``--min-area-mm2`` of metastasis) is detected
when the prediction on that slice is positive and overlaps the truth (``oncolabel evaluate``'s rule, so the pooled
figure equals its slice sensitivity). Each slice is attributed to the lesion (3D truth component, matched to the
generator's lesion JSON by its centre) with the most area on it, and described by

* the case's slice thickness;
* its place in the lesion: an end slice (the lesion's first or last labelled slice) or an inner one;
* its lesion area on the slice (mm^2) and the lesion's drawn diameter and type;
* its measured contrast: median HU of the lesion pixels on the slice minus the median HU of the bone (> 100 HU)
  in a ring 1.5-4 mm around them on the same slice, so partial volume and blur are included.

Prints and writes (``--out``) the detection rate per band of each, pooled over the cohorts.

    python bench/bone_metastasis_visibility.py --pair PRED_DIR COHORT_DIR [--pair ...] --out visibility.json

Research use only (synthetic phantoms).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.evaluation import slice_table
from oncolabel.io import read_image
from oncolabel.lesions import label_components
from oncolabel.phantoms.io import read_lesion_record
from oncolabel.stats import wilson_ci

BANDS = {
    "slice_thickness_mm": (0, 1.5, 2.5, 3.5, 99),
    "lesion_area_mm2": (0, 25, 50, 100, 200, 1e9),
    "abs_contrast_hu": (0, 50, 100, 200, 1e9),
    "lesion_diameter_mm": (0, 10, 20, 1e9),
}


def _band(value: float, edges: tuple[float, ...]) -> tuple[int, str]:
    """(index, label) of the band ``edges[i] <= value < edges[i + 1]``; the last edge is open."""
    i = min(max(int(np.searchsorted(edges, value, side="right")) - 1, 0), len(edges) - 2)
    return i, (f">= {edges[i]:g}" if i == len(edges) - 2 else f"{edges[i]:g}-{edges[i + 1]:g}")


def slice_rows(pred: np.ndarray, truth: np.ndarray, hu: np.ndarray, spacing: tuple[float, float, float],
               lesions: list[dict], *, min_area_mm2: float = 10.0) -> list[dict]:
    """One row per truth-positive slice of a case; arrays ``(z, y, x)``, ``spacing`` (x, y, z) in mm."""
    t_pos, p_pos, overlap = slice_table(pred, truth, spacing=spacing, min_area_mm2=min_area_mm2)
    labels, n = label_components(truth)
    labelled = [d for d in lesions if d.get("labelled", True)]
    info = {}
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        zs = np.flatnonzero((labels[sl] == i).any(axis=(1, 2))) + sl[0].start
        inside = [d for d in labelled if labels[tuple(int(v) for v in d["centre_voxel"][::-1])] == i]
        if not inside:  # the centre voxel lies outside the labelled part: nearest centre
            com = np.array(ndimage.center_of_mass(labels == i))
            inside = sorted(labelled, key=lambda d: float(np.sum((np.array(d["centre_voxel"][::-1]) - com) ** 2)))[:1]
        info[i] = {"z0": int(zs.min()), "z1": int(zs.max()), "lesion": inside[0] if inside else {}}
    px_mm2 = spacing[0] * spacing[1]
    inner = ndimage.generate_binary_structure(2, 1)
    r_in, r_out = (max(1, int(round(r / spacing[0]))) for r in (1.5, 4.0))
    rows = []
    for z in np.flatnonzero(t_pos):
        areas = np.bincount(labels[z].ravel(), minlength=n + 1)[1:]
        i = int(np.argmax(areas)) + 1
        les = labels[z] == i
        near = ndimage.binary_dilation(les, inner, iterations=r_in)
        ring = ndimage.binary_dilation(les, inner, iterations=r_out) & ~near & ~truth[z].astype(bool) & (hu[z] > 100)
        contrast = float(np.median(hu[z][les]) - np.median(hu[z][ring])) if ring.any() else float("nan")
        d = info[i]
        rows.append({"detected": bool(p_pos[z] and overlap[z]), "slice_thickness_mm": float(spacing[2]),
                     "end_slice": z in (d["z0"], d["z1"]), "lesion_area_mm2": float(areas[i - 1] * px_mm2),
                     "abs_contrast_hu": abs(contrast), "contrast_hu": contrast,
                     "lesion_diameter_mm": float(d["lesion"].get("diameter_mm", np.nan)),
                     "lesion_type": d["lesion"].get("type", "unknown"), "lesion_slices": d["z1"] - d["z0"] + 1})
    return rows


def rate(rows: list[dict]) -> dict:
    k = sum(r["detected"] for r in rows)
    if not rows:
        return {"n": 0, "detected": 0, "sensitivity": None, "wilson": [None, None]}
    lo, hi = wilson_ci(k, len(rows))
    return {"n": len(rows), "detected": k, "sensitivity": round(k / len(rows), 4),
            "wilson": [round(lo, 4), round(hi, 4)]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", nargs=2, action="append", required=True, metavar=("PRED_DIR", "COHORT_DIR"))
    ap.add_argument("--min-area-mm2", type=float, default=10.0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    rows = []
    for pred_dir, cohort in a.pair:
        for truth_path in sorted(Path(cohort, "labels").glob("*.nii.gz")):
            case = truth_path.name[:-len(".nii.gz")]
            truth_img, pred_img = read_image(truth_path), read_image(Path(pred_dir, truth_path.name))
            hu = sitk.GetArrayFromImage(read_image(Path(cohort, "images", truth_path.name)))
            lesions = read_lesion_record(cohort, case)["lesions"]
            truth = sitk.GetArrayViewFromImage(truth_img) > 0
            for r in slice_rows(sitk.GetArrayFromImage(pred_img) > 0, truth, hu, truth_img.GetSpacing(), lesions,
                                min_area_mm2=a.min_area_mm2):
                rows.append({"case": case, **r})
    table = {"all": rate(rows),
             "end_slice": {str(v): rate([r for r in rows if r["end_slice"] == v]) for v in (True, False)},
             "lesion_type": {t: rate([r for r in rows if r["lesion_type"] == t])
                             for t in sorted({r["lesion_type"] for r in rows})}}
    for key, edges in BANDS.items():
        groups: dict[tuple[int, str], list[dict]] = {}
        for r in rows:
            if np.isfinite(r[key]):
                groups.setdefault(_band(r[key], edges), []).append(r)
        table[key] = {b: rate(g) for (_, b), g in sorted(groups.items())}
    groups = {}
    for r in rows:
        groups.setdefault((_band(r["slice_thickness_mm"], BANDS["slice_thickness_mm"]), r["end_slice"]), []).append(r)
    table["end_slice_by_thickness"] = {f"{b} mm, {'end' if e else 'inner'}": rate(g)
                                       for ((_, b), e), g in sorted(groups.items())}
    for key, val in table.items():
        if key == "all":
            print(f"all truth-positive slices: {val['detected']}/{val['n']} = {val['sensitivity']:.3f}")
            continue
        print(key)
        for b, v in val.items():
            if not v["n"]:
                continue
            print(f"  {b:>22}  {v['detected']:4d}/{v['n']:4d}  {v['sensitivity']:.3f}  [{v['wilson'][0]:.3f}, "
                  f"{v['wilson'][1]:.3f}]")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"notice": RESEARCH_USE_ONLY, "pairs": a.pair, "min_area_mm2": a.min_area_mm2,
                                     "table": table, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
