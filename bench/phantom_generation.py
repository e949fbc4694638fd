"""Benchmark: generating one full-size bone-metastasis phantom (512 x 512, 150 mm at 2.5 mm) against the 5 s budget.

Replaces a timed test (``tests/unit/phantoms/test_speed.py``): speed is measured here, not asserted in the suite.
Prints the median of ``--repeats`` generations (seeds 1, 2, ...) and its ratio to the budget, with the machine.

    python bench/phantom_generation.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

from oncolabel.phantoms import BoneMetastasisPhantomConfig, generate_bone_metastasis_case

BUDGET_S = 5.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = BoneMetastasisPhantomConfig(thickness_mm=(2.5,), z_mm=(150.0, 150.0))
    times = []
    for seed in range(1, args.repeats + 1):
        start = time.perf_counter()
        case = generate_bone_metastasis_case(seed, config=cfg)
        times.append(time.perf_counter() - start)
        if case.image.GetSize() != (512, 512, 60):
            raise SystemExit(f"unexpected phantom size {case.image.GetSize()}")
    median = statistics.median(times)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "size": [512, 512, 60],
                      "seconds": [round(t, 3) for t in times], "median_s": round(median, 3),
                      "budget_s": BUDGET_S, "median_over_budget": round(median / BUDGET_S, 3)}, indent=1))


if __name__ == "__main__":
    main()
