"""Where does the bone-metastasis model fail? Misses by lesion type / size / site, false positives by cause.

For every case of a phantom cohort (the generator's lesion JSON knows each metastasis and each mimic), runs the
model once and reports:

* metastases: detected (the prediction covers >= 10 % of its voxels, the evaluation rule) by type, site class and
  diameter band;
* false-positive components (touching no metastasis voxel): attributed to the nearest drawn mimic within
  ``--near-mm`` of the component (bone island, endplate sclerosis, osteophyte, Schmorl node, hemangioma, vascular
  calcification) or "other";
* truth-positive slices missed and false-positive slices, pooled, at the task's post-processing;
* every missed truth-positive slice (>= 10 mm^2 of metastasis; counted per lesion and slice) by cause, so that the
  stage to improve is known:
  the lesion was missed because the network stayed below the threshold on all of it, or its above-threshold voxels
  formed no candidate (too small, or no seed), or its candidate was dropped by the false-positive filter, or the
  prediction covers less than 10 % of it (the lesion rule); or the
  lesion was found but not on this slice, because the network stayed below the threshold there (typically the
  first and last slices), or the slice's predicted area stayed below 10 mm^2.

    python bench/bone_metastasis_errors.py --model CKPT --cohort DIR [--out errors.json]

Research use only (synthetic phantoms).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from oncolabel.cli.train import cohort_items
from oncolabel.evaluation import case_counts, evaluate_cases
from oncolabel.inference import SegmentationPredictor
from oncolabel.io import case_id_of, read_image
from oncolabel.lesions import label_components
from oncolabel.phantoms.io import read_lesion_record

BANDS = ((0, 10), (10, 20), (20, 1000))


def band(d: float) -> str:
    lo, hi = next(b for b in BANDS if b[0] <= d < b[1])
    return f"{lo}-{hi} mm" if hi < 1000 else f">= {lo} mm"


def missed_slice_causes(prob: np.ndarray, candidates: np.ndarray, mask: np.ndarray, truth: np.ndarray, *,
                        spacing: tuple[float, ...], threshold: float,
                        min_area_mm2: float = 10.0) -> collections.Counter[str]:
    """Why each truth-positive slice that the final ``mask`` misses was missed (module docstring); ``(z, y, x)``."""
    min_px = max(1, int(np.ceil(min_area_mm2 / (spacing[0] * spacing[1]))))
    out: collections.Counter[str] = collections.Counter()
    t_lab, n = label_components(truth)
    for i, sl in enumerate(ndimage.find_objects(t_lab), start=1):
        region = t_lab[sl] == i
        found = (mask[sl] & region).sum() >= 0.1 * region.sum()
        for z in range(region.shape[0]):
            if region[z].sum() < min_px:
                continue
            m = mask[sl][z]
            if m.sum() >= min_px and (m & truth[sl][z]).any():
                continue  # detected (the evaluation rule)
            if not found:
                if not (prob[sl][region] >= threshold).any():
                    cause = "lesion missed: network below threshold"
                elif not (candidates[sl] & region).any():
                    cause = "lesion missed: no candidate (too small or no seed)"
                elif (mask[sl] & region).any():
                    cause = "lesion missed: the prediction covers < 10 % of it"
                else:
                    cause = "lesion missed: candidate dropped by the filter"
            elif not (prob[sl][z][region[z]] >= threshold).any():
                cause = "lesion found, slice missed: network below threshold there"
            else:
                cause = "lesion found, slice missed: predicted area < min area or off the lesion"
            out[cause] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint (default: the shipped model)")
    ap.add_argument("--cohort", nargs="+", required=True)
    ap.add_argument("--near-mm", type=float, default=6.0)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    predictor = SegmentationPredictor(a.model)
    hits: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    fp_causes: collections.Counter[str] = collections.Counter()
    slice_causes: collections.Counter[str] = collections.Counter()
    counts = []
    for item in cohort_items(a.cohort):
        cid = case_id_of(item["image"])
        img = read_image(item["image"])
        truth = sitk.GetArrayFromImage(read_image(item["label"])) > 0
        pred = predictor.predict(img)
        mask = sitk.GetArrayFromImage(pred.label) > 0
        counts.append(case_counts(mask, truth, spacing=img.GetSpacing(), case_id=cid))
        slice_causes.update(missed_slice_causes(pred.probability, predictor.candidates(pred.probability, img), mask,
                                                truth, spacing=img.GetSpacing(),
                                                threshold=predictor.spec.postprocessing.threshold))
        record = read_lesion_record(Path(item["image"]).parent.parent, cid)
        sx, sy, sz = img.GetSpacing()
        truth_lab, _ = label_components(truth)
        for les in record["lesions"]:
            i, j, k = les["centre_voxel"]
            comp = truth_lab[k, j, i] if 0 <= k < truth.shape[0] else 0
            if comp == 0:  # the centre voxel may be unlabelled (irregular lesion): use the nearest labelled voxel
                idx = np.argwhere(truth_lab > 0)
                if not idx.size:
                    continue
                d = ((idx - [k, j, i]) * [sz, sy, sx]) ** 2
                comp = truth_lab[tuple(idx[int(d.sum(1).argmin())])]
            region = truth_lab == comp
            detected = (mask & region).sum() >= 0.1 * region.sum()
            for key in (f"type {les['type']}", f"site {les['site_class']}", f"size {band(les['diameter_mm'])}",
                        "all"):
                hits[key][0] += int(detected)
                hits[key][1] += 1
        pred_lab, n = label_components(mask)
        mimic_centres = [(h["type"], np.array(h["centre_voxel"][::-1])) for h in record.get("hard_negatives", [])
                         if "centre_voxel" in h]
        for c in range(1, n + 1):
            comp = pred_lab == c
            if (comp & truth).any():
                continue
            com = np.array(ndimage.center_of_mass(comp))
            best, best_d = "other", math.inf
            for kind, centre in mimic_centres:
                d = float(np.linalg.norm((com - centre) * [sz, sy, sx]))
                if d < best_d:
                    best, best_d = kind, d
            fp_causes[best if best_d <= a.near_mm + 10.0 else "other"] += 1
    ev = evaluate_cases(counts, n_boot=200)
    out = {"cases": len(counts), "evaluation": ev.to_dict(),
           "detection": {k: {"detected": v[0], "total": v[1], "rate": round(v[0] / v[1], 3)}
                         for k, v in sorted(hits.items())},
           "false_positive_components": dict(fp_causes.most_common()),
           "missed_truth_slices": dict(slice_causes.most_common())}
    text = json.dumps(out, indent=2)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)
    print(ev.summary())
    for k, v in out["detection"].items():
        print(f"  {k:32s} {v['detected']:3d}/{v['total']:3d}  {v['rate']:.2f}")
    print("  false-positive components:", out["false_positive_components"])
    print("  missed truth-positive slices:", out["missed_truth_slices"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
