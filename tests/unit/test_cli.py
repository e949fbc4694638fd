from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.cli import main
from oncolabel.io import check_same_geometry, read_image
from tests.conftest import toy_ct


def test_infer_writes_label_on_input_geometry(tmp_path, toy_checkpoint, capsys):
    image, _ = toy_ct(2)
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))  # a non-identity orientation must be kept
    image.SetOrigin((10.5, -20.25, 33.0))
    src = tmp_path / "in.nrrd"
    sitk.WriteImage(image, str(src))
    for out in (tmp_path / "out.nii.gz", tmp_path / "out.nrrd", tmp_path / "out.seg.nrrd"):
        rc = main(["infer", "bone-metastasis", str(src), str(out), "--model", str(toy_checkpoint),
                   "--json", str(tmp_path / "out.json")])
        assert rc == 0
        label = read_image(out)
        check_same_geometry(image, label)
        assert set(np.unique(sitk.GetArrayViewFromImage(label))) <= {0, 1}
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label),
                                      sitk.GetArrayFromImage(read_image(tmp_path / "out.nii.gz")))
    assert "Segment0_Name:=metastasis" in (tmp_path / "out.seg.nrrd").read_bytes()[:4000].decode("latin-1")
    printed = capsys.readouterr()
    line = printed.out.strip().splitlines()[-1]
    assert "lesion(s) found" in line and "research use only" in line
    assert printed.err == ""  # the toy model was trained on images of this voxel size
    meta = json.loads((tmp_path / "out.json").read_text())
    assert meta["provenance"]["model_sha256"] and "lesions" in meta and "warnings" not in meta
    # the shipped model was trained on 0.6-0.9 mm pixels: stdout keeps its one line, stderr and the JSON say so
    assert main(["infer", "bone-metastasis", str(src), str(tmp_path / "s.nii.gz"),
                 "--json", str(tmp_path / "s.json")]) == 0
    printed = capsys.readouterr()
    assert len(printed.out.strip().splitlines()) == 1
    assert printed.err == ("warning: in-plane pixel size 1.50 mm lies outside the 0.60-0.90 mm of the images this "
                           "model was trained on: its output is an extrapolation\n")
    assert json.loads((tmp_path / "s.json").read_text())["warnings"] == [printed.err[len("warning: "):].strip()]
    for precision in ("fp32", "bf16"):  # bf16 runs (emulated) on any CPU; the provenance says which ran
        assert main(["infer", "bone-metastasis", str(src), str(tmp_path / "p.nii.gz"), "--model", str(toy_checkpoint),
                     "--precision", precision, "--json", str(tmp_path / "p.json")]) == 0
        assert json.loads((tmp_path / "p.json").read_text())["provenance"]["precision"] == precision


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "x.nii.gz").write_bytes(b"garbage" * 100) and d / "x.nii.gz", "x.nii.gz"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "empty"),
    (lambda d: sitk.WriteImage(sitk.Image(32, 32, sitk.sitkInt16), str(d / "flat.nrrd")) or d / "flat.nrrd", "2D"),
    (lambda d: sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)),
                               str(d / "mr.nii.gz")) or d / "mr.nii.gz", "not a CT"),
    (lambda d: sitk.WriteImage(toy_ct(0)[0] + 1024, str(d / "raw.nii.gz")) or d / "raw.nii.gz", "no air or fat"),
])
def test_infer_bad_input_fails_cleanly(tmp_path, toy_checkpoint, capsys, make, message):
    src = make(tmp_path)
    out = tmp_path / "o.nii.gz"
    out_existing = tmp_path / "keep.nii.gz"
    out_existing.write_bytes(b"previous result")
    for dest in (out, out_existing):
        rc = main(["infer", "bone-metastasis", str(src), str(dest), "--model", str(toy_checkpoint)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and message in err[0]
    assert not out.exists() and out_existing.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_infer_refuses_a_real_mr_image(tmp_path, toy_checkpoint, capsys):
    """pyradiomics' brain MR (0..1633) spans a CT-like range; it holds no air or fat, so it is not taken for a CT."""
    from tests.conftest import realdata

    mr = realdata("pyradiomics", "brain1_image.nrrd")
    assert main(["infer", "bone-metastasis", str(mr), str(tmp_path / "o.nii.gz"), "--model", str(toy_checkpoint)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no air or fat" in err[0] and not (tmp_path / "o.nii.gz").exists()


def test_infer_rejects_bad_output_name(tmp_path, toy_checkpoint, capsys):
    image, _ = toy_ct(0)
    sitk.WriteImage(image, str(tmp_path / "in.nii.gz"))
    assert main(["infer", "bone-metastasis", str(tmp_path / "in.nii.gz"), str(tmp_path / "o.png"),
                 "--model", str(toy_checkpoint)]) == 1
    assert "OUTPUT" in capsys.readouterr().err


def test_infer_refuses_to_write_over_its_input(tmp_path, toy_checkpoint, capsys):
    """OUTPUT or --json naming INPUT (also through a hard link) would replace the CT: refused, nothing written."""
    import os

    image, _ = toy_ct(0)
    ct = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(ct))
    os.link(ct, tmp_path / "same.nii.gz")
    before = ct.read_bytes()
    for args in ([str(ct)], [str(tmp_path / "same.nii.gz")], [str(tmp_path / "o.nii.gz"), "--json", str(ct)],
                 [str(tmp_path / "o.nii.gz"), "--json", str(tmp_path / "o.nii.gz")]):
        capsys.readouterr()
        assert main(["infer", "bone-metastasis", str(ct), *args, "--model", str(toy_checkpoint)]) == 1
        err = capsys.readouterr().err
        assert ("is an input file" in err or "must differ" in err) and err.count("\n") == 1, err
    assert ct.read_bytes() == before and not (tmp_path / "o.nii.gz").exists()


def test_infer_on_a_real_dicom_ct_series_with_the_shipped_model(tmp_path, capsys):
    """dcmqi's 3-slice abdominal CT (512 x 512, a real DICOM series, padded with -3024 outside the reconstructed
    circle as many scanners do; refused as "not a CT" until 2026-12-07): the label lies on the series' exact grid."""
    from tests.conftest import realdata

    folder = realdata("dcmqi", "segmentations", "ct-3slice")
    out = tmp_path / "label.nrrd"
    assert main(["infer", "bone-metastasis", str(folder), str(out), "--json", str(tmp_path / "l.json")]) == 0
    label = read_image(out)
    check_same_geometry(read_image(folder), label)
    assert set(np.unique(sitk.GetArrayViewFromImage(label))) <= {0, 1}
    assert json.loads((tmp_path / "l.json").read_text())["input"] == str(folder)
    assert "lesion(s) found" in capsys.readouterr().out
    from tests.conftest import tilted_dicom_copy

    tilted = tilted_dicom_copy(tmp_path / "tilted", 15.0)  # the same series as a gantry-tilted scanner stores it
    assert main(["infer", "bone-metastasis", str(tilted), str(tmp_path / "t.nrrd")]) == 1
    err = capsys.readouterr().err
    assert "gantry tilt about 15.0 degrees" in err and err.count("\n") == 1 and not (tmp_path / "t.nrrd").exists()
    from tests.conftest import multiframe_dicom_copy

    enhanced = multiframe_dicom_copy(tmp_path / "enhanced", order=(2, 0, 1)).parent  # one multi-frame file
    assert main(["infer", "bone-metastasis", str(enhanced), str(tmp_path / "m.nrrd")]) == 0  # was "is 4D"
    check_same_geometry(label, read_image(tmp_path / "m.nrrd"))
    assert np.array_equal(sitk.GetArrayFromImage(read_image(tmp_path / "m.nrrd")), sitk.GetArrayFromImage(label))


def test_console_script_exit_status(tmp_path):
    r = subprocess.run([sys.executable, "-m", "oncolabel", "infer", "bone-metastasis", str(tmp_path / "none.nii.gz"),
                        str(tmp_path / "o.nii.gz")], capture_output=True, text=True)
    assert r.returncode == 1 and "no such file" in r.stderr and r.stderr.count("\n") == 1


def test_evaluate_command(tmp_path, capsys):
    image, label = toy_ct(0)
    (tmp_path / "truth" / "labels").mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    sitk.WriteImage(label, str(tmp_path / "truth" / "labels" / "c1.nii.gz"))
    sitk.WriteImage(label, str(tmp_path / "pred" / "c1.nii.gz"))
    assert main(["evaluate", "bone-metastasis", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
                 "--out", str(tmp_path / "r.json")]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["pooled"]["dice_pooled"] == 1.0 and rep["pooled"]["slice_sensitivity"]["value"] == 1.0
    assert "software" in rep["provenance"]
    (tmp_path / "truth" / "labels" / "c2.nii.gz").write_bytes((tmp_path / "pred" / "c1.nii.gz").read_bytes())
    assert main(["evaluate", "bone-metastasis", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth")]) == 1
    assert "no prediction for 1 truth case(s): c2" in capsys.readouterr().err
    (tmp_path / "truth" / "labels" / "c2.nii.gz").unlink()
    prob = sitk.Cast(label, sitk.sitkFloat32) * 0.9 + 0.01  # a probability map handed in as the prediction
    sitk.WriteImage(prob, str(tmp_path / "pred" / "c1.nii.gz"))
    assert main(["evaluate", "bone-metastasis", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
                 "--out", str(tmp_path / "p.json")]) == 1
    err = capsys.readouterr().err  # it was counted as lesion wherever above 0: PPV and Dice near 0, silently
    assert "the prediction of case c1 holds fractional values (0.01..0.91): a probability map?" in err
    assert err.count("\n") == 1 and not (tmp_path / "p.json").exists()
    sitk.WriteImage(sitk.Cast(label, sitk.sitkFloat32), str(tmp_path / "pred" / "c1.nii.gz"))  # 0.0 / 1.0: a label
    assert main(["evaluate", "bone-metastasis", "--pred", str(tmp_path / "pred"),
                 "--truth", str(tmp_path / "truth")]) == 0


def test_fit_filter_stores_a_filter_that_infer_then_applies(tmp_path, capsys):
    """``fit-filter`` on the sample phantoms with the shipped model: a new checkpoint (same weights, a filter,
    a report); ``infer`` with it records the filter. Refuses to overwrite its input model."""
    import shutil
    from pathlib import Path

    from oncolabel.checkpoint import load_checkpoint

    cohort = Path(__file__).resolve().parents[2] / "sample-data" / "bone-metastasis"
    out = tmp_path / "filtered.pt"
    assert main(["fit-filter", "bone-metastasis", "--cohort", str(cohort), "--out", str(out), "--folds", "2"]) == 0
    assert "cross-validated AUC" in capsys.readouterr().out
    ck = load_checkpoint(out)
    report = json.loads(out.with_suffix(".json").read_text())
    assert ck.component_filter["fitted_on_model"] == report["model_sha256"] != ck.sha256
    assert report["report"]["n_cases"] == 5 and report["notice"].startswith("research use only")
    image = sorted((cohort / "images").glob("*.nii.gz"))[0]
    assert main(["infer", "bone-metastasis", str(image), str(tmp_path / "l.nii.gz"), "--model", str(out),
                 "--json", str(tmp_path / "l.json")]) == 0
    prov = json.loads((tmp_path / "l.json").read_text())["provenance"]
    assert prov["component_filter"]["applied"] and prov["model_sha256"] == ck.sha256
    before = out.read_bytes()
    assert main(["fit-filter", "bone-metastasis", "--model", str(out), "--cohort", str(cohort), "--out", str(out)]) == 1
    assert "is the input model" in capsys.readouterr().err and out.read_bytes() == before
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(cohort / "images", unlabelled / "images")
    (unlabelled / "labels").mkdir()
    first = sorted((cohort / "labels").glob("*.nii.gz"))[0]
    shutil.copy(first, unlabelled / "labels" / first.name)  # one label for five images
    assert main(["fit-filter", "bone-metastasis", "--cohort", str(unlabelled), "--out", str(tmp_path / "x.pt")]) == 1
    assert "no label for" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_train_command_spacing_override_and_warm_start_across_preprocessing(tmp_path, capsys):
    """``oncolabel train``: ``--spacing-mm`` trains an intermediate stage at another working pixel size; warming the
    task's own training from it needs ``--init-other-preprocessing`` (one clear line otherwise) and is recorded."""
    from oncolabel.checkpoint import load_checkpoint
    from oncolabel.tasks import get_task

    cohort = tmp_path / "cohort"
    (cohort / "images").mkdir(parents=True)
    (cohort / "labels").mkdir()
    image, label = toy_ct(4)
    sitk.WriteImage(image, str(cohort / "images" / "c0.nii.gz"))
    sitk.WriteImage(label, str(cohort / "labels" / "c0.nii.gz"))
    spacing = get_task("bone_metastasis").preprocessing.spacing_mm
    common = ["train", "bone-metastasis", "--data", str(cohort), "--iterations", "2", "--batch-size", "2"]
    stage = tmp_path / "stage.pt"
    assert main([*common, "--out", str(stage), "--spacing-mm", str(spacing * 1.5)]) == 0
    assert load_checkpoint(stage).preprocessing["spacing_mm"] == spacing * 1.5
    capsys.readouterr()
    refused = tmp_path / "refused.pt"
    assert main([*common, "--out", str(refused), "--init", str(stage)]) != 0
    assert "other preprocessing" in capsys.readouterr().err and not refused.exists()
    before = stage.read_bytes()  # the output may not replace the warm-start model it was started from
    assert main([*common, "--out", str(stage), "--init", str(stage), "--init-other-preprocessing"]) == 1
    assert "is an input file" in capsys.readouterr().err
    assert stage.read_bytes() == before
    child = tmp_path / "child.pt"
    assert main([*common, "--out", str(child), "--init", str(stage), "--init-other-preprocessing"]) == 0
    ck = load_checkpoint(child)
    assert ck.preprocessing["spacing_mm"] == spacing
    assert ck.training["init_preprocessing"]["spacing_mm"] == spacing * 1.5
    assert main([*common, "--out", str(tmp_path / "bad.pt"), "--spacing-mm", "0"]) != 0
    # the loss's lesion-size weight: the task's (1) unless given, recorded in the checkpoint, refused when negative
    assert ck.training["lesion_size_weight"] == 1.0
    plain = tmp_path / "plain.pt"
    assert main([*common, "--out", str(plain), "--lesion-size-weight", "0"]) == 0
    assert "lesion_size_weight" not in load_checkpoint(plain).training
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "neg.pt"), "--lesion-size-weight", "-1"]) != 0
    assert "--lesion-size-weight" in capsys.readouterr().err and not (tmp_path / "neg.pt").exists()
    # lesion-balanced sampling: off by the task's default unless given, recorded, refused outside [0, 1]
    assert "lesion_sampling_fraction" not in ck.training
    balanced = tmp_path / "balanced.pt"
    assert main([*common, "--out", str(balanced), "--lesion-sampling", "0.5"]) == 0
    assert load_checkpoint(balanced).training["lesion_sampling_fraction"] == 0.5
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "over.pt"), "--lesion-sampling", "1.5"]) != 0
    assert "--lesion-sampling" in capsys.readouterr().err and not (tmp_path / "over.pt").exists()


def test_batch_runs_infer_over_a_cohort_refuses_bad_cases_alone_and_resumes(tmp_path, toy_checkpoint, capsys):
    """`oncolabel batch bone-metastasis`: each case's label and JSON are the single-case command's; a corrupt case
    is refused by itself (exit 1, reason in summary.csv); run again, done cases are kept, not redone."""
    import csv

    cohort = tmp_path / "cohort" / "images"
    cohort.mkdir(parents=True)
    for i in (1, 2):
        sitk.WriteImage(toy_ct(20 + i)[0], str(cohort / f"case{i}.nii.gz"))
    (cohort / "broken.nii.gz").write_bytes(b"garbage" * 20)
    (cohort / "notes.txt").write_text("not a case")
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(["batch", "bone-metastasis", str(cohort.parent), "--out", str(out), "--model", str(toy_checkpoint)])
    printed = capsys.readouterr()
    assert rc == 1 and "1 of 3 case(s) refused (broken)" in printed.err
    assert "[1/3] broken: refused: " in printed.out and "[3/3] case2: done: " in printed.out
    rows = {r["case"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["broken"]["status"] == "refused" and "broken.nii.gz" in rows["broken"]["result"]
    assert not (out / "broken.nii.gz").exists() and not (out / "broken.json").exists()
    assert rows["case2"]["status"] == "done" and "lesion(s) found" in rows["case2"]["result"]
    for case in ("case1",):  # the single-case command gives the same files
        assert rows[case]["status"] == "done" and "lesion(s) found" in rows[case]["result"]
        assert main(["infer", "bone-metastasis", str(cohort / f"{case}.nii.gz"), str(tmp_path / f"{case}.nii.gz"),
                     "--model", str(toy_checkpoint), "--json", str(tmp_path / f"{case}.json")]) == 0
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(out / f"{case}.nii.gz")),
                                      sitk.GetArrayFromImage(read_image(tmp_path / f"{case}.nii.gz")))
        single = json.loads((tmp_path / f"{case}.json").read_text())
        assert int(rows[case]["lesion_count"]) == single["lesion_count"]
        assert json.loads((out / f"{case}.json").read_text())["lesions"] == single["lesions"]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("case*")}
    assert main(["batch", "bone-metastasis", str(cohort), "--out", str(out), "--model", str(toy_checkpoint)]) == 1
    rows = {r["case"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["case1"]["status"] == rows["case2"]["status"] == "already done"
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("case*")} == stamps
    assert json.loads((out / "batch.json").read_text())["refused"] == ["broken"]
    # a case whose input changed since its result was written is refused naming it; the result is kept, not redone
    # over and not counted as the new file's; the cohort moved elsewhere is the same cohort
    original = (cohort / "case2.nii.gz").read_bytes()
    sitk.WriteImage(toy_ct(99)[0], str(cohort / "case2.nii.gz"))
    assert main(["batch", "bone-metastasis", str(cohort), "--out", str(out), "--model", str(toy_checkpoint)]) == 1
    rows = {r["case"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["case1"]["status"] == "already done" and rows["case2"]["status"] == "refused"
    assert rows["case2"]["result"] == ("input changed since case2.json was written: remove it to redo the case, or "
                                       "use another --out")
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("case*")} == stamps
    (cohort / "case2.nii.gz").write_bytes(original)
    shutil.copytree(cohort, tmp_path / "moved")
    assert main(["batch", "bone-metastasis", str(tmp_path / "moved"), "--out", str(out), "--model",
                 str(toy_checkpoint)]) == 1
    rows = {r["case"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["case1"]["status"] == rows["case2"]["status"] == "already done"
    capsys.readouterr()  # the shipped model on the same output folder: the toy model's results are not mixed in
    assert main(["batch", "bone-metastasis", str(cohort), "--out", str(out)]) == 1
    assert "3 of 3 case(s) refused" in capsys.readouterr().err
    rows = {r["case"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert "case1.json holds a result of another model" in rows["case1"]["result"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("case*")} == stamps
    # a CSV of cases (paths relative to it); ids name output files, so path tricks are refused before any work
    (tmp_path / "cases.csv").write_text("case,input\nfirst,cohort/images/case1.nii.gz\nnone,\n")
    capsys.readouterr()
    assert main(["batch", "bone-metastasis", str(tmp_path / "cases.csv"), "--out", str(tmp_path / "o2"),
                 "--model", str(toy_checkpoint), "--format", ".seg.nrrd"]) == 1
    rows = {r["case"]: r for r in csv.DictReader(open(tmp_path / "o2" / "summary.csv"))}
    assert rows["first"]["status"] == "done" and (tmp_path / "o2" / "first.seg.nrrd").exists()
    assert rows["none"]["status"] == "refused" and rows["none"]["result"] == "no input given"
    inside = tmp_path / "one"  # the output folder inside the cohort folder is not taken for a case on a rerun
    inside.mkdir()
    (inside / "case1.nii.gz").write_bytes((cohort / "case1.nii.gz").read_bytes())
    for _ in range(2):
        assert main(["batch", "bone-metastasis", str(inside), "--out", str(inside / "results"), "--model",
                     str(toy_checkpoint)]) == 0
    assert [r["case"] for r in csv.DictReader(open(inside / "results" / "summary.csv"))] == ["case1"]
    (tmp_path / "evil.csv").write_text("case,input\n../evil,cohort/images/case1.nii.gz\n")
    assert main(["batch", "bone-metastasis", str(tmp_path / "evil.csv"), "--out", str(tmp_path / "o3")]) == 1
    assert "case id '../evil'" in capsys.readouterr().err and not (tmp_path / "o3").exists()


def test_batch_fingerprint_names_the_inputs_and_values_that_changed(tmp_path):
    """A case's fingerprint: each input's content (a DICOM folder's files and their names; hidden files ignored)
    and its values; `batch` names what differs from the run that wrote its result."""
    from oncolabel.cli.batch import Case, _changed, case_fingerprint
    from oncolabel.errors import InvalidInputError

    phases = ("unenhanced", "corticomedullary", "nephrographic", "excretory")
    for name in phases:
        (tmp_path / name).mkdir()
        (tmp_path / name / "1.dcm").write_bytes(name.encode())
    case = Case("a", tuple(str(tmp_path / n) for n in phases), {"age": "61", "sex": "F"})
    before = case_fingerprint(case)
    (tmp_path / "nephrographic" / ".DS_Store").write_bytes(b"x")
    assert _changed("renal-mass", case, before, case_fingerprint(case)) == ""
    (tmp_path / "nephrographic" / "1.dcm").rename(tmp_path / "nephrographic" / "2.dcm")
    (tmp_path / "excretory" / "1.dcm").write_bytes(b"other")
    assert _changed("renal-mass", case, before, case_fingerprint(case)) == "nephrographic, excretory"
    moved = Case("a", case.inputs, {"age": "62", "sex": "F", "size_mm": "30"})
    assert _changed("renal-mass", moved, before, case_fingerprint(moved)).endswith("excretory, age, size_mm")
    folder_case = Case("b", (str(tmp_path / "unenhanced"),), {})  # a renal case given as its folder
    first = case_fingerprint(folder_case)
    (tmp_path / "unenhanced" / "2.dcm").write_bytes(b"added")
    assert _changed("renal-mass", folder_case, first, case_fingerprint(folder_case)) == "the case folder"
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        case_fingerprint(Case("c", (str(tmp_path / "gone.nii.gz"),), {}))
