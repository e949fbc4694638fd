"""Benchmark: whole-volume bone-metastasis inference vs a naive slice-by-slice baseline, in one process.

Both runs use the same DeepLabV3+ weights on the same phantom CTs (512 x 512 x 200 at 1 mm slices, one per seed):

* **ours** - :class:`oncolabel.inference.SegmentationPredictor` as the task runs it (``--precision``, default
  ``auto``: bf16 autocast where the CPU runs it natively, :mod:`oncolabel.precision`), the same in float32
  (``ours_fp32``), with the optional left-right flip average (two network passes, ``ours_flip``), and with the
  network on the whole body box instead of the bone region (``ours_whole_box``; ``--roi-margin MM`` for another
  margin): body crop, the network only on the bone region of each group of slices (> 200 HU grown by the spec's
  ``bone_roi_margin_mm``; ``bench/bone_metastasis_roi.py``), the task's working pixels, batches of slices, batch
  norms folded into the convolutions, channels-last memory layout, ``torch.inference_mode``; probabilities mapped
  back onto the CT grid; component analysis on the mask's bounding box.
* **baseline** - the naive way: the checkpoint's network as stored, every slice at its full 512 x 512 native
  resolution, batch 1, fp32, same HU window and 2.5D neighbours, same threshold and post-processing.

Prints both wall times, the ratio, and both runs' slice-wise sensitivity / PPV against the phantom truth.

    python bench/bone_metastasis_infer.py [--model CKPT] [--threads 2] [--slices 200] [--seeds 7 8 9 10]
        [--precision auto|fp32|bf16] [--roi-margin MM]
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
from oncolabel.inference import SegmentationPredictor, build_model
from oncolabel.phantoms import BoneMetastasisPhantomConfig, generate_bone_metastasis_case
from oncolabel.transforms import IntensityWindow


def baseline(predictor: SegmentationPredictor, image: sitk.Image) -> np.ndarray:
    """Naive inference: slice by slice at native resolution, batch 1, fp32."""
    spec = predictor.spec
    model = build_model(predictor.checkpoint, spec)  # as stored: no batch-norm folding, default memory layout
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


def _cpu_name() -> str:
    """The CPU model (timings depend on it: AMX / AVX-512 BF16 decide the precision)."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint (default: the shipped model)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CI machines have 2 cores)")
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9, 10],
                    help="one phantom volume per seed (accuracy is pooled over them; time is per volume)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per volume (the fastest counts)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="ours (default: auto)")
    ap.add_argument("--roi-margin", type=float, default=None,
                    help="bone-region margin (mm) of the comparison run (default: none, the whole body box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dataclasses.replace(BoneMetastasisPhantomConfig(), z_mm=(float(args.slices), float(args.slices)),
                              thickness_mm=(1.0,), lesion_free_fraction=0.0)
    predictor = SegmentationPredictor(args.model, precision=args.precision)  # the task's settings
    spec = predictor.spec
    fp32 = SegmentationPredictor(predictor.checkpoint, precision="fp32")
    flip = SegmentationPredictor(predictor.checkpoint, task=dataclasses.replace(
        spec, postprocessing=dataclasses.replace(spec.postprocessing, flip_average=True)), precision=args.precision)
    other = SegmentationPredictor(predictor.checkpoint, task=dataclasses.replace(
        spec, postprocessing=dataclasses.replace(spec.postprocessing, bone_roi_margin_mm=args.roi_margin)),
        precision=args.precision)
    other_name = "ours_whole_box" if args.roi_margin is None else f"ours_roi_{args.roi_margin:g}mm"
    methods = {"ours": lambda img: sitk.GetArrayFromImage(predictor.predict(img).label) > 0,
               "ours_fp32": lambda img: sitk.GetArrayFromImage(fp32.predict(img).label) > 0,
               "ours_flip": lambda img: sitk.GetArrayFromImage(flip.predict(img).label) > 0,
               other_name: lambda img: sitk.GetArrayFromImage(other.predict(img).label) > 0,
               "baseline": lambda img: baseline(predictor, img)}
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    counts: dict[str, list] = {name: [] for name in methods}
    for i, seed in enumerate(args.seeds):
        case = generate_bone_metastasis_case(seed, config=cfg)
        image, truth = case.image, sitk.GetArrayFromImage(case.label) > 0
        if i == 0:
            for warm in (predictor, fp32, other):  # warm-up (allocator, kernels)
                warm.predict(image)
        line = [f"phantom {case.case_id}: size {image.GetSize()}, spacing "
                f"{tuple(round(s, 3) for s in image.GetSpacing())}, {len(case.lesions)} metastases"]
        for name, run in methods.items():
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                mask = run(image)
                times.append(time.perf_counter() - t)
            seconds[name].append(min(times))
            counts[name].append(case_counts(mask, truth, spacing=image.GetSpacing(), case_id=case.case_id))
            line.append(f"{name} {min(times):.2f} s")
        print("; ".join(line), flush=True)
    results = {}
    for name in methods:
        ev = evaluate_cases(counts[name], n_boot=1)
        results[name] = {"seconds_per_volume": round(float(np.mean(seconds[name])), 3),
                         "seconds": [round(t, 3) for t in seconds[name]],
                         "slice_sensitivity": ev.slice_sensitivity.value, "slice_ppv": ev.slice_ppv.value,
                         "lesion_sensitivity": ev.lesion_sensitivity.value, "dice": ev.dice_pooled}
        print(f"{name:10s} {np.mean(seconds[name]):7.2f} s per volume ({args.threads} threads)  slice sensitivity "
              f"{ev.slice_sensitivity.value:.3f}  slice PPV {ev.slice_ppv.value:.3f}  lesion sensitivity "
              f"{ev.lesion_sensitivity.value:.3f}  Dice {ev.dice_pooled:.3f}", flush=True)
    ratio = results["baseline"]["seconds_per_volume"] / results["ours"]["seconds_per_volume"]
    ratio_fp32 = results["baseline"]["seconds_per_volume"] / results["ours_fp32"]["seconds_per_volume"]
    ratio_flip = results["baseline"]["seconds_per_volume"] / results["ours_flip"]["seconds_per_volume"]
    ratio_other = results["baseline"]["seconds_per_volume"] / results[other_name]["seconds_per_volume"]
    print(f"speed-up (baseline / ours): {ratio:.1f}x with the task's settings ({predictor.precision}), "
          f"{ratio_fp32:.1f}x in float32, {ratio_flip:.1f}x with the flip average (two passes), {ratio_other:.1f}x "
          f"{other_name}  "
          "(goal >= 5x at equal accuracy; ours <= 10 s on 2 cores)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seeds": args.seeds, "slices": args.slices, "threads": args.threads,
                       "model": predictor.version, "precision": predictor.precision,
                       "batch_size": predictor.batch_size,
                       "spacing_mm": spec.preprocessing.spacing_mm, "results": results, "ratio": ratio,
                       "ratio_fp32": ratio_fp32, "ratio_flip_average": ratio_flip, f"ratio_{other_name}": ratio_other,
                       "bone_roi_margin_mm": {"ours": spec.postprocessing.bone_roi_margin_mm,
                                              other_name: args.roi_margin},
                       "cpu": _cpu_name()}, fh, indent=2)


if __name__ == "__main__":
    main()
