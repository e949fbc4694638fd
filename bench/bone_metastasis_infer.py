"""Benchmark: whole-volume bone-metastasis inference vs a naive slice-by-slice baseline, in one process.

Both runs use the same DeepLabV3+ weights on the same phantom CT (512 x 512 x ~200 at 1 mm slices):

* **ours** - :class:`oncolabel.inference.SegmentationPredictor`: body crop, 1.25 mm working pixels, batches of
  slices, channels-last memory layout, ``torch.inference_mode``; probabilities mapped back onto the CT grid.
* **baseline** - the naive way: every slice at its full 512 x 512 native resolution, batch 1, fp32, same HU window
  and 2.5D neighbours, same threshold and post-processing.

Prints both wall times, the ratio, and both runs' slice-wise sensitivity / PPV against the phantom truth.

    python bench/bone_metastasis_infer.py [--model CKPT] [--threads 2] [--slices 200] [--seed 7]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import SimpleITK as sitk
import torch

from oncolabel.evaluation import case_counts, evaluate_cases
from oncolabel.inference import SegmentationPredictor
from oncolabel.phantoms import BoneMetastasisPhantomConfig, generate_bone_metastasis_case
from oncolabel.transforms import IntensityWindow


def baseline(predictor: SegmentationPredictor, image: sitk.Image) -> np.ndarray:
    """Naive inference: slice by slice at native resolution, batch 1, fp32."""
    spec, model = predictor.spec, predictor.model
    prep = spec.preprocessing
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    window = IntensityWindow(prep.hu_low, prep.hu_high)
    prob = np.zeros(hu.shape, np.float32)
    n = hu.shape[0]
    model = model.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        for z in range(n):
            idx = [min(max(z + d, 0), n - 1) for d in range(-prep.context, prep.context + 1)]
            x = torch.from_numpy(window(hu[idx]))[None]  # (1, C, 512, 512)
            prob[z] = torch.softmax(model(x), dim=1)[0, 1].numpy()
    return predictor.postprocess(prob, image)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint (default: the shipped model)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CI machines have 2 cores)")
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dataclasses.replace(BoneMetastasisPhantomConfig(), z_mm=(float(args.slices), float(args.slices)),
                              thickness_mm=(1.0,), lesion_free_fraction=0.0)
    case = generate_bone_metastasis_case(args.seed, config=cfg)
    image, truth = case.image, sitk.GetArrayFromImage(case.label) > 0
    print(f"phantom {case.case_id}: size {image.GetSize()}, spacing {tuple(round(s, 3) for s in image.GetSpacing())}, "
          f"{len(case.lesions)} metastases; {args.threads} threads", flush=True)
    predictor = SegmentationPredictor(args.model)
    predictor.predict(image)  # warm-up (allocator, kernels)
    results = {}
    for name, run in (("ours", lambda: sitk.GetArrayFromImage(predictor.predict(image).label) > 0),
                      ("baseline", lambda: baseline(predictor, image))):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            mask = run()
            times.append(time.perf_counter() - t)
        ev = evaluate_cases([case_counts(mask, truth, spacing=image.GetSpacing(), case_id=case.case_id)], n_boot=1)
        results[name] = {"seconds": round(min(times), 3), "slice_sensitivity": ev.slice_sensitivity.value,
                         "slice_ppv": ev.slice_ppv.value, "dice": ev.dice_pooled}
        print(f"{name:9s} {min(times):7.2f} s  slice sensitivity {ev.slice_sensitivity.value:.3f}  "
              f"slice PPV {ev.slice_ppv.value:.3f}  Dice {ev.dice_pooled:.3f}", flush=True)
    ratio = results["baseline"]["seconds"] / results["ours"]["seconds"]
    print(f"speed-up (baseline / ours): {ratio:.1f}x  (goal >= 5x at equal accuracy; ours <= 10 s on 2 cores)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"size": image.GetSize(), "threads": args.threads, "model": predictor.version,
                       "results": results, "ratio": ratio}, fh, indent=2)


if __name__ == "__main__":
    main()
