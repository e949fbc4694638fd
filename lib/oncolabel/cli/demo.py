"""``oncolabel demo``: the server over the sample studies, driven as an annotation client would drive it."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.io import list_images, read_image
from oncolabel.phantoms.io import read_lesion_record

SAMPLE = Path(__file__).resolve().parents[3] / "sample-data" / "bone-metastasis"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the active-learning demo on the sample data",
                       description="Starts the OncoLabel MONAI Label server on 127.0.0.1 over a copy of the sample "
                                   "studies, then: next sample (uncertainty) -> infer -> submit the corrected label "
                                   "-> one training round -> infer again with the new model, printing Dice "
                                   "before/after. The server then keeps running until Ctrl-C.")
    p.add_argument("--sample-data", default=str(SAMPLE), metavar="DIR", help="cohort folder (images/, labels/)")
    p.add_argument("--work-dir", default="demo-work", metavar="DIR",
                   help="where the demo datastore lives (recreated each run)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--iterations", type=int, default=80, help="iterations of the training round")
    p.add_argument("--no-wait", action="store_true", help="stop the server at the end instead of serving on")
    p.set_defaults(func=run)


def _dice(a_path: str, b_path: Path) -> float:
    a = sitk.GetArrayFromImage(read_image(a_path)) > 0
    b = sitk.GetArrayFromImage(read_image(b_path)) > 0
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(a, b).sum() / denom)


def _reference_lesions(sample_data: str, cid: str) -> str:
    """The case's reference lesions from the generator's lesion list (``lesions/<id>.json``), in a few words."""
    try:
        lesions = read_lesion_record(sample_data, cid)["lesions"]
    except InvalidInputError:
        return "lesion list not available"
    if not lesions:
        return "no metastasis"
    return f"{len(lesions)} metastasis(es): " + ", ".join(
        f"{le['type']} {le.get('site', '?')} {le['diameter_mm']:.0f} mm" for le in lesions)


def run(args: argparse.Namespace) -> int:
    from oncolabel.server.process import ServerProcess, free_port

    images = list_images(args.sample_data, subfolder="images")
    truth = list_images(args.sample_data, subfolder="labels")
    work = Path(args.work_dir).resolve()
    if work.exists():
        if not (work / ".oncolabel-demo").exists():
            raise InvalidInputError(f"{work} exists and is not a demo folder; choose another --work-dir")
        shutil.rmtree(work)
    studies = work / "studies"
    studies.mkdir(parents=True)
    (work / ".oncolabel-demo").touch()
    for cid, path in images.items():
        shutil.copyfile(path, studies / path.name)
    port = args.port
    try:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    except OSError:
        port = free_port()
        print(f"port {args.port} is busy; using {port}")
    print(f"OncoLabel demo ({RESEARCH_USE_ONLY})")
    print(f"1. starting the MONAI Label server with the OncoLabel app over {len(images)} sample studies ...", flush=True)
    t0 = time.time()
    server = ServerProcess(studies, port=port, log_path=work / "server.log", log_level="warning")
    try:
        c = server.client
        info = c.info()
        version0 = info["models"]["bone_metastasis"]["model_version"]
        print(f"   up at {server.url} in {time.time() - t0:.0f} s; model bone_metastasis version {version0}")
        print("2. active learning: asking the uncertainty strategy for the next case ...", flush=True)
        sample = c.next_sample("uncertainty")
        cid = sample["id"]
        print(f"   next sample: {cid} (uncertainty {sample.get('uncertainty', 0):.4f}, "
              f"{sample.get('unlabeled')} unlabelled)")
        others = [k for k in images if k != cid]
        held_out = next((k for k in others if k in truth and
                         sitk.GetArrayFromImage(read_image(truth[k])).any()), others[0])
        print(f"3. inference on {cid} ...", flush=True)
        t = time.time()
        label, params = c.infer("bone_metastasis", cid, label_out=str(work / f"{cid}_before.nii.gz"))
        c.infer("bone_metastasis", held_out, label_out=str(work / f"{held_out}_before.nii.gz"))
        d_before = _dice(label, truth[cid])
        dh_before = _dice(str(work / f"{held_out}_before.nii.gz"), truth[held_out])
        print(f"   {params['lesion_count']} lesion(s), {params['total_volume_ml']:.1f} ml in {time.time() - t:.1f} s; "
              f"Dice vs reference {d_before:.3f}")
        for warning in params.get("warnings", []):  # the sample cases are small phantoms with coarser pixels
            print(f"   server's warning: {warning}")
        print(f"4. the radiologist corrects the segmentation; submitting it as the final label of {cid} ...")
        res = c.save_label(cid, str(truth[cid]), params={"annotator": "demo", "source": "reference correction"})
        print(f"   stored as label version {c.label_info(cid).get('version')} ({res})")
        print(f"5. one training round ({args.iterations} iterations, warm start from {version0}) ...", flush=True)
        task = c.train_start("bone_metastasis", {"max_iterations": args.iterations})
        last = [""]

        def progress(status: dict) -> None:
            lines = [d for d in status.get("details", []) if "train bone_metastasis" in d]
            if lines and lines[-1] != last[0]:
                last[0] = lines[-1]
                print("   " + lines[-1].split(" - ", 1)[-1][:110], flush=True)

        c.wait_for_training(task.get("id"), timeout=1800, on_progress=progress)
        version1 = c.info()["models"]["bone_metastasis"]["model_version"]
        print(f"   new model published: {version1}")
        print("6. inference again with the updated model ...", flush=True)
        label2, params2 = c.infer("bone_metastasis", cid, label_out=str(work / f"{cid}_after.nii.gz"))
        c.infer("bone_metastasis", held_out, label_out=str(work / f"{held_out}_after.nii.gz"))
        d_after = _dice(label2, truth[cid])
        dh_after = _dice(str(work / f"{held_out}_after.nii.gz"), truth[held_out])
        print(f"   served by model {params2['model_version']}"
              + ("" if params2.get("warnings") else " (trained on this case too: no voxel-size warning now)"))
        print(f"   Dice on {cid} (the corrected case):   before {d_before:.3f} -> after {d_after:.3f}")
        print(f"   Dice on {held_out} (not used in training): before {dh_before:.3f} -> after {dh_after:.3f}")
        for case in (cid, held_out):
            print(f"   reference of {case}: {_reference_lesions(args.sample_data, case)}")
        print(f"Results under {work}; server log {server.log_path}")
        if args.no_wait:
            return 0
        print(f"\nThe server keeps running at {server.url} (Ctrl-C stops it).")
        print("Connect 3D Slicer: install the OncoLabel module (docs/slicer.md), or MONAI Label's own Slicer plugin,")
        print(f"and set the server address to {server.url}.")
        while server.process.poll() is None:
            time.sleep(1)
        return 0
    except KeyboardInterrupt:
        print("\nstopping the server ...")
        return 0
    finally:
        server.stop()
