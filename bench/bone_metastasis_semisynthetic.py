"""Semi-synthetic check: metastases implanted into the real vertebral bodies of a real CT, segmented by the CLI.

Uses TotalSegmentator's public test CT (``example_ct.nii.gz``, 3 mm, unenhanced torso) and its vertebral-body
masks (``spine_report/example_ct_report/totalseg_vertebrae_body.nii.gz``) from ``../shared/realdata``. In ``--n``
vertebral bodies chosen with ``--seed`` it implants one lesion each (lytic: 20-80 HU; blastic: 700-1100 HU; an
irregular ellipsoid of 12-25 mm clipped to the body, with partial-volume edges and the image's own noise kept),
writes image + truth, runs ``oncolabel infer bone-metastasis`` on the image as a user would, and evaluates.

    python bench/bone_metastasis_semisynthetic.py --out DIR [--model CKPT] [--n 6] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from oncolabel.evaluation import evaluate_images
from oncolabel.io import read_image, write_image

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "totalsegmentator"


def implant(ct: sitk.Image, bodies: sitk.Image, n: int, seed: int) -> tuple[sitk.Image, sitk.Image, list[dict]]:
    rng = np.random.default_rng(seed)
    hu = sitk.GetArrayFromImage(ct).astype(np.float32)
    vb = sitk.GetArrayFromImage(bodies)
    labels = [v for v in np.unique(vb) if v and (vb == v).sum() > 400]
    chosen = rng.choice(labels, size=min(n, len(labels)), replace=False)
    sz, sy, sx = ct.GetSpacing()[::-1]
    truth = np.zeros(hu.shape, np.uint8)
    records = []
    zz, yy, xx = np.indices(hu.shape, dtype=np.float32)
    for k, v in enumerate(chosen):
        body = vb == v
        body_core = ndimage.binary_erosion(body, iterations=1)
        pts = np.argwhere(body_core if body_core.any() else body)
        c = pts[rng.integers(len(pts))]
        d = rng.uniform(12, 25)
        radii = d / 2 * rng.uniform(0.8, 1.2, 3)
        r = np.sqrt(((zz - c[0]) * sz / radii[0]) ** 2 + ((yy - c[1]) * sy / radii[1]) ** 2 +
                    ((xx - c[2]) * sx / radii[2]) ** 2)
        kind = "lytic" if k % 2 == 0 else "blastic"
        target = rng.uniform(20, 80) if kind == "lytic" else rng.uniform(700, 1100)
        weight = np.clip(1.5 - r, 0, 1) * body  # 1 inside, linear partial-volume edge, only inside the body
        noise = hu - ndimage.uniform_filter(hu, 3)
        hu = np.where(weight > 0, (1 - weight) * hu + weight * (target + noise), hu)
        lesion = (weight >= 0.5)
        truth[lesion] = 1
        records.append({"vertebral_body_label": int(v), "type": kind, "diameter_mm": round(float(d), 1),
                        "voxels": int(lesion.sum()), "centre_index_zyx": [int(i) for i in c]})
    out = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    out.CopyInformation(ct)
    lab = sitk.GetImageFromArray(truth)
    lab.CopyInformation(ct)
    return out, lab, records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ct_path = REAL / "example_ct.nii.gz"
    vb_path = REAL / "spine_report" / "example_ct_report" / "totalseg_vertebrae_body.nii.gz"
    if not ct_path.exists():
        sys.exit(f"{ct_path} not found: this check needs ../shared/realdata (see its MANIFEST.md)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image, truth, records = implant(read_image(ct_path), read_image(vb_path), args.n, args.seed)
    write_image(image, out / "image.nii.gz")
    write_image(truth, out / "truth.nii.gz")
    cmd = [sys.executable, "-m", "oncolabel", "infer", "bone-metastasis", str(out / "image.nii.gz"),
           str(out / "pred.nii.gz"), "--json", str(out / "pred.json")] + (["--model", args.model] if args.model else [])
    print("$ " + " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)
    ev = evaluate_images([("example_ct", read_image(out / "pred.nii.gz"), truth)], min_area_mm2=10.0)
    c = ev.cases[0]
    print(f"implanted {len(records)} lesions ({', '.join(r['type'] + ' ' + str(r['diameter_mm']) + ' mm' for r in records)})")
    print(ev.summary())
    print(f"lesions detected {c.detected_lesions}/{c.truth_lesions}; false-positive components {c.false_positive_lesions}")
    (out / "semisynthetic.json").write_text(json.dumps({"implanted": records, "evaluation": ev.to_dict()}, indent=2))


if __name__ == "__main__":
    main()
