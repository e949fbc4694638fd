"""Benchmark: ``/info/`` latency while the server runs an inference (target < 50 ms), against idle latency.

Starts the real OncoLabel server on 127.0.0.1 over one 512 x 512 x ~160 phantom CT, fires inferences on it from one
client and polls ``/info/`` from another; prints idle and busy latency percentiles and their ratio.

    python bench/server_info_latency.py [--model CKPT] [--inferences 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import threading
import time
from pathlib import Path

import SimpleITK as sitk

from oncolabel.client import OncoLabelClient
from oncolabel.phantoms import BoneMetastasisPhantomConfig, generate_bone_metastasis_case
from oncolabel.server.process import ServerProcess


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--inferences", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        studies = Path(tmp) / "studies"
        studies.mkdir()
        cfg = dataclasses.replace(BoneMetastasisPhantomConfig(), z_mm=(160.0, 160.0), thickness_mm=(1.0,))
        sitk.WriteImage(generate_bone_metastasis_case(3, config=cfg).image, str(studies / "ct.nii.gz"))
        conf = {"model.bone_metastasis": args.model} if args.model else {}
        with ServerProcess(studies, conf=conf) as srv:
            poll = OncoLabelClient(srv.url)
            idle = [poll.ping() for _ in range(30)]
            busy, infer_s = [], []
            for _ in range(args.inferences):
                done = threading.Event()

                def infer() -> None:
                    t = time.perf_counter()
                    try:
                        OncoLabelClient(srv.url).infer("bone_metastasis", "ct")
                        infer_s.append(time.perf_counter() - t)
                    finally:
                        done.set()

                th = threading.Thread(target=infer)
                th.start()
                time.sleep(0.1)
                while not done.is_set():
                    busy.append(poll.ping())
                    time.sleep(0.02)
                th.join()
    print(f"inference: {statistics.median(infer_s):.2f} s median over {len(infer_s)}")
    print(f"/info/ idle: median {1000 * statistics.median(idle):.1f} ms, p95 {1000 * pct(idle, 0.95):.1f} ms")
    print(f"/info/ during inference: median {1000 * statistics.median(busy):.1f} ms, p95 {1000 * pct(busy, 0.95):.1f} ms,"
          f" max {1000 * max(busy):.1f} ms over {len(busy)} calls (target < 50 ms)")
    print(f"ratio busy/idle (median): {statistics.median(busy) / statistics.median(idle):.1f}x")


if __name__ == "__main__":
    main()
