"""CLI contract of ``oncolabel infer renal-mass | pet-lymphoma | hn-response`` and ``oncolabel phantoms ...``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.cli import main
from oncolabel.io import check_same_geometry, read_image
from tests.conftest import cd_export, realdata


def _case_dir(item: dict, key: str) -> Path:
    return Path(item[key]).parent


def _check_json(path: Path, classes: set[str]) -> dict:
    data = json.loads(path.read_text())
    assert set(data["probabilities"]) == classes
    assert sum(data["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert data["prediction"] in classes and data["notice"].startswith("research use only")
    assert data["model_version"] and data["provenance"]["model_sha256"]
    return data


def test_renal_mass_folder_json_and_heatmap(toy_models, toy_cohorts, tmp_path, capsys):
    item = toy_cohorts["renal_mass"][0]
    out, heat = tmp_path / "r.json", tmp_path / "h.nii.gz"
    rc = main(["infer", "renal-mass", str(_case_dir(item, "corticomedullary")), "--model",
               str(toy_models["renal_mass"]), "--json", str(out), "--heatmap", str(heat)])
    assert rc == 0 and "research use only" in capsys.readouterr().out
    data = _check_json(out, {"benign", "malignant"})
    assert set(data["inputs"]) == {"unenhanced", "corticomedullary", "nephrographic", "excretory"}
    assert data["heatmap"]["grid_of"] == "corticomedullary"
    check_same_geometry(read_image(item["corticomedullary"]), read_image(heat), what="heat map")


def test_renal_mass_four_files_any_order_and_missing_phase(toy_models, toy_cohorts, tmp_path, capsys):
    item = toy_cohorts["renal_mass"][0]
    files = [item[p] for p in ("excretory", "unenhanced", "nephrographic", "corticomedullary")]
    assert main(["infer", "renal-mass", *files, "--model", str(toy_models["renal_mass"]),
                 "--age", "60", "--sex", "F", "--size-mm", "22", "--json", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["head"]["method"] == "multivariable"
    capsys.readouterr()
    rc = main(["infer", "renal-mass", *files[:3], "--model", str(toy_models["renal_mass"])])
    assert rc == 1 and "missing CT phase(s): corticomedullary" in capsys.readouterr().err
    rc = main(["infer", "renal-mass", *files[:3], "--model", str(toy_models["renal_mass"]), "--allow-missing-phases",
               "--json", str(tmp_path / "m.json")])
    assert rc == 0 and json.loads((tmp_path / "m.json").read_text())["missing_inputs"] == ["corticomedullary"]
    err = capsys.readouterr().err  # the mass measurements need all four phases: said on stderr, not hidden
    assert "warning: image measurements not made" in err and "corticomedullary" in err
    rc = main(["infer", "renal-mass", *files, "--model", str(toy_models["renal_mass"]), "--age", "60"])
    assert rc == 1 and "together" in capsys.readouterr().err
    for age, size, message in (("160", "22", "age = 160 is not a plausible value (expected 0 to 120)"),
                               ("60", "0", "size_mm = 0 is not a plausible value (expected 1 to 300)")):
        rc = main(["infer", "renal-mass", *files, "--model", str(toy_models["renal_mass"]), "--age", age, "--sex", "M",
                   "--size-mm", size])  # typing errors were extrapolated ("malignant 0.988" at age 160)
        assert rc == 1 and message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["/no/such/folder"], "no such file"),
    (["{notes}"], "cannot tell the phases"),
    (["{a}", "{b}", "{c}", "{notes}"], "cannot tell the phase"),
])
def test_renal_mass_bad_inputs(args, message, toy_models, toy_cohorts, tmp_path, capsys):
    item = toy_cohorts["renal_mass"][0]
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    paths = {"notes": str(notes), "a": item["unenhanced"], "b": item["corticomedullary"], "c": item["excretory"]}
    rc = main(["infer", "renal-mass", *[a.format(**paths) for a in args], "--model", str(toy_models["renal_mass"])])
    assert rc == 1 and message in capsys.readouterr().err


def test_renal_phases_on_their_own_grids(toy_models, toy_cohorts, tmp_path, capsys):
    """A phase reconstructed with other slices and pixels (as scanners store the phases of one examination) is
    resampled onto the corticomedullary grid and named on stderr and in the JSON; one that does not cover the
    region is refused, naming it, with nothing written."""
    case = tmp_path / "case"
    shutil.copytree(_case_dir(toy_cohorts["renal_mass"][0], "corticomedullary"), case)
    ng = read_image(case / "nephrographic.nii.gz")
    thick = sitk.Image([ng.GetSize()[0] // 2, ng.GetSize()[1] // 2, ng.GetSize()[2] // 2 + 1], sitk.sitkFloat32)
    thick.SetSpacing(tuple(2.0 * s for s in ng.GetSpacing()))
    thick.SetDirection(ng.GetDirection())
    thick.SetOrigin(ng.GetOrigin())
    sitk.WriteImage(sitk.Cast(sitk.Resample(ng, thick, sitk.Transform(), sitk.sitkLinear, -1000.0), sitk.sitkInt16),
                    str(case / "nephrographic.nii.gz"))
    out, heat = tmp_path / "r.json", tmp_path / "h.nii.gz"
    rc = main(["infer", "renal-mass", str(case), "--model", str(toy_models["renal_mass"]), "--json", str(out),
               "--heatmap", str(heat)])
    err = capsys.readouterr().err
    assert rc == 0 and "warning: nephrographic phase on another grid than the corticomedullary phase" in err, err
    assert "nephrographic phase" in _check_json(out, {"benign", "malignant"})["warnings"][0]
    check_same_geometry(read_image(case / "corticomedullary.nii.gz"), read_image(heat), what="heat map")
    crop = read_image(case / "excretory.nii.gz")
    sitk.WriteImage(crop[: crop.GetSize()[0] // 2], str(case / "excretory.nii.gz"))
    out.unlink()
    rc = main(["infer", "renal-mass", str(case), "--model", str(toy_models["renal_mass"]), "--json", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "the excretory phase covers about" in err and err.count("\n") == 1 and not out.exists(), err


def test_renal_corrupt_phase_file(toy_models, toy_cohorts, tmp_path, capsys):
    src = _case_dir(toy_cohorts["renal_mass"][0], "corticomedullary")
    case = tmp_path / "case"
    shutil.copytree(src, case)
    (case / "excretory.nii.gz").write_bytes(b"garbage" * 10)
    rc = main(["infer", "renal-mass", str(case), "--model", str(toy_models["renal_mass"])])
    assert rc == 1 and "excretory.nii.gz" in capsys.readouterr().err


def test_renal_phase_without_hounsfield_units_is_refused(toy_models, toy_cohorts, tmp_path, capsys):
    """A phase stored without its rescale intercept (water near 1024) was classified with full confidence."""
    case = tmp_path / "case"
    shutil.copytree(_case_dir(toy_cohorts["renal_mass"][0], "corticomedullary"), case)
    raw = sitk.Cast(read_image(case / "excretory.nii.gz"), sitk.sitkInt16) + 1024
    sitk.WriteImage(raw, str(case / "excretory.nii.gz"))
    out = tmp_path / "r.json"
    rc = main(["infer", "renal-mass", str(case), "--model", str(toy_models["renal_mass"]), "--json", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "excretory phase" in err and "no air or fat" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_pet_lymphoma_nifti(toy_models, toy_cohorts, tmp_path, capsys):
    item = toy_cohorts["pet_lymphoma"][0]
    out, heat = tmp_path / "p.json", tmp_path / "p.nrrd"
    assert main(["infer", "pet-lymphoma", item["image"], "--model", str(toy_models["pet_lymphoma"]),
                 "--json", str(out), "--heatmap", str(heat)]) == 0
    data = _check_json(out, {"sarcoidosis", "lymphoma"})
    assert data["suv"]["source"] == "file declares SUVbw"
    check_same_geometry(read_image(item["image"]), read_image(heat), what="heat map")
    plain = tmp_path / "counts.nii.gz"
    img = read_image(item["image"]) * 1000.0
    sitk.WriteImage(sitk.Cast(img, sitk.sitkFloat32), str(plain))  # no SUV declaration
    capsys.readouterr()
    assert main(["infer", "pet-lymphoma", str(plain), "--model", str(toy_models["pet_lymphoma"])]) == 1
    assert "--suv-scale" in capsys.readouterr().err
    assert main(["infer", "pet-lymphoma", str(plain), "--suv-scale", "0.001",
                 "--model", str(toy_models["pet_lymphoma"])]) == 0
    assert main(["infer", "pet-lymphoma", str(plain), "--suv-scale", "1",
                 "--model", str(toy_models["pet_lymphoma"])]) == 1
    assert "not a plausible SUV" in capsys.readouterr().err


def test_pet_lymphoma_dicom_without_suv_headers_stops(toy_models, tmp_path, capsys):
    folder = realdata("pet_nema_iq_pynemaiqpet", "pet_recon_2")
    rc = main(["infer", "pet-lymphoma", str(folder), "--model", str(toy_models["pet_lymphoma"])])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot compute SUV" in err and "--suv-scale" in err and "PatientWeight" in err
    out = tmp_path / "nema.json"
    assert main(["infer", "pet-lymphoma", str(folder), "--suv-scale", "0.0005", "--model",
                 str(toy_models["pet_lymphoma"]), "--json", str(out), "--heatmap", str(tmp_path / "h.nii.gz")]) == 0
    data = _check_json(out, {"sarcoidosis", "lymphoma"})
    assert data["suv"]["source"] == "user-given scale factor" and data["suv"]["factor"] == 0.0005
    assert read_image(tmp_path / "h.nii.gz").GetSize() == (192, 192, 89)


def test_hn_response_from_the_planning_rtstruct(toy_models, toy_cohorts, tmp_path, capsys):
    """The GTV as radiotherapy planning stores it (an RT Structure Set, here the real pydicom RTSTRUCT with its
    'patient' contours replaced by a box around the tumour on each of its slices, plus a second structure): `infer
    hn-response CT RS.dcm --roi GTV` gives exactly the probabilities of the same mask given as a NIfTI file, and
    records the structure; without --roi the only GTV is taken; `batch` passes a CSV's roi column."""
    import csv

    from tests.conftest import rtstruct_boxes

    item = toy_cohorts["hn_response"][0]
    boxed = rtstruct_boxes(read_image(item["image"]), read_image(item["mask"]), tmp_path / "RS.dcm")
    sitk.WriteImage(boxed, str(tmp_path / "box.nii.gz"))
    model = str(toy_models["hn_response"])
    for extra in (["--roi", "gtvp"], []):
        assert main(["infer", "hn-response", item["image"], str(tmp_path / "RS.dcm"), "--model", model, "--json",
                     str(tmp_path / "rs.json"), *extra]) == 0
        from_rtstruct = json.loads((tmp_path / "rs.json").read_text())
        assert from_rtstruct["mask_read_as"] == {"source": "RTSTRUCT", "structure": "GTVp"}
    assert main(["infer", "hn-response", item["image"], str(tmp_path / "box.nii.gz"), "--model", model, "--json",
                 str(tmp_path / "box.json")]) == 0
    from_nifti = json.loads((tmp_path / "box.json").read_text())
    assert from_rtstruct["probabilities"] == from_nifti["probabilities"]
    assert from_nifti["mask_read_as"] == {"source": "label image", "structure": None}
    capsys.readouterr()
    assert main(["infer", "hn-response", item["image"], str(tmp_path / "RS.dcm"), "--model", model, "--roi",
                 "Isocenter 2"]) == 1
    assert "structure 'Isocenter 2' has no closed planar contour" in capsys.readouterr().err
    (tmp_path / "cases.csv").write_text(f"case,ct,mask,roi\na,{item['image']},{tmp_path / 'RS.dcm'},GTVp\n")
    assert main(["batch", "hn-response", str(tmp_path / "cases.csv"), "--out", str(tmp_path / "out"), "--model",
                 model]) == 0
    assert json.loads((tmp_path / "out" / "a.json").read_text())["probabilities"] == from_nifti["probabilities"]
    assert [r["status"] for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))] == ["done"]
    # a planning export: the CT's slices and the RS file in one folder, as a case folder of a cohort
    import pydicom

    from tests.unit.test_dicom_seg import _write_series

    (tmp_path / "cohort").mkdir()
    export = _write_series(sitk.Cast(read_image(item["image"]), sitk.sitkInt16), tmp_path / "cohort" / "p1")
    frame = str(pydicom.dcmread(next(export.iterdir())).FrameOfReferenceUID)
    rtstruct_boxes(read_image(export), read_image(item["mask"]), export / "RS.1.2.3.dcm", frame_of_reference=frame)
    assert main(["batch", "hn-response", str(tmp_path / "cohort"), "--out", str(tmp_path / "out2"), "--model",
                 model]) == 0
    assert main(["infer", "hn-response", str(export), str(export / "RS.1.2.3.dcm"), "--model", model, "--json",
                 str(tmp_path / "export.json")]) == 0
    single = json.loads((tmp_path / "export.json").read_text())
    assert single["mask_read_as"] == {"source": "RTSTRUCT", "structure": "GTVp"}
    assert json.loads((tmp_path / "out2" / "p1.json").read_text())["probabilities"] == single["probabilities"]


def test_hn_response(toy_models, toy_cohorts, tmp_path, capsys):
    item = toy_cohorts["hn_response"][0]
    out, heat = tmp_path / "h.json", tmp_path / "h.nii.gz"
    assert main(["infer", "hn-response", item["image"], item["mask"], "--model", str(toy_models["hn_response"]),
                 "--json", str(out), "--heatmap", str(heat)]) == 0
    _check_json(out, {"poor_response", "good_response"})
    check_same_geometry(read_image(item["image"]), read_image(heat), what="heat map")
    empty = tmp_path / "empty.nii.gz"
    m = read_image(item["mask"])
    sitk.WriteImage(sitk.Cast(m * 0, sitk.sitkUInt8), str(empty))
    capsys.readouterr()
    assert main(["infer", "hn-response", item["image"], str(empty), "--model", str(toy_models["hn_response"])]) == 1
    assert "empty" in capsys.readouterr().err
    other = tmp_path / "other.nii.gz"
    moved = sitk.Image(m)
    moved.SetOrigin(np.add(m.GetOrigin(), (0.5 * m.GetSpacing()[0], 0.0, 0.0)).tolist())  # between the CT's voxels
    sitk.WriteImage(moved, str(other))
    assert main(["infer", "hn-response", item["image"], str(other), "--model", str(toy_models["hn_response"])]) == 1
    assert "origin" in capsys.readouterr().err
    prob = tmp_path / "prob.nii.gz"  # a probability map was a tumour wherever above 0
    sitk.WriteImage(sitk.Cast(m, sitk.sitkFloat32) * 0.9 + 0.05, str(prob))
    assert main(["infer", "hn-response", item["image"], str(prob), "--model", str(toy_models["hn_response"])]) == 1
    assert "the tumour mask holds fractional values" in capsys.readouterr().err
    assert main(["infer", "hn-response", item["image"], item["mask"], "--heatmap", str(tmp_path / "h.png"),
                 "--model", str(toy_models["hn_response"])]) == 1
    assert "--heatmap" in capsys.readouterr().err


def test_hn_response_on_a_real_ct_lesion_reports_its_measurements_and_that_it_extrapolates(tmp_path, capsys):
    """pyradiomics' real chest CT and lung lesion (NRRD) through the shipped H&N model: a 1.4 ml lesion without
    measurable texture lies far outside the phantom cohort the model was fitted on, and the JSON and stderr say so
    (stdout keeps its one line)."""
    image = realdata("pyradiomics", "lung1_image.nrrd")
    mask = realdata("pyradiomics", "lung1_label.nrrd")
    out, heat = tmp_path / "h.json", tmp_path / "h.nrrd"
    capsys.readouterr()
    assert main(["infer", "hn-response", str(image), str(mask), "--json", str(out), "--heatmap", str(heat)]) == 0
    printed = capsys.readouterr()
    assert len(printed.out.strip().splitlines()) == 1
    assert "warning: log_volume_ml" in printed.err and "extrapolates" in printed.err
    data = _check_json(out, {"poor_response", "good_response"})
    assert data["measurements"]["log_volume_ml"] == pytest.approx(np.log(837 * 0.5703125 ** 2 * 5.0 / 1000), abs=1e-5)
    assert "log_volume_ml" in data["head"]["inputs"]
    assert any(w.startswith("log_volume_ml") and "extrapolates" in w for w in data["warnings"])
    # the lesion's label cropped to its extent, as 3D Slicer stores a .seg.nrrd: placed back, the same answer
    label = read_image(mask)
    zs, ys, xs = np.nonzero(sitk.GetArrayViewFromImage(label))
    crop = sitk.RegionOfInterest(label, [int(np.ptp(xs)) + 5, int(np.ptp(ys)) + 5, int(np.ptp(zs)) + 1],
                                 [int(xs.min()) - 2, int(ys.min()) - 2, int(zs.min())])
    sitk.WriteImage(crop, str(tmp_path / "lesion.seg.nrrd"))
    again = tmp_path / "again.json"
    assert main(["infer", "hn-response", str(image), str(tmp_path / "lesion.seg.nrrd"), "--json", str(again)]) == 0
    cropped = json.loads(again.read_text())
    assert cropped["probabilities"] == data["probabilities"] and cropped["measurements"] == data["measurements"]
    check_same_geometry(read_image(image), read_image(heat), what="heat map")


def test_hn_response_refuses_a_real_mr(toy_models, tmp_path, capsys):
    """pyradiomics' real brain MR (0..1633) with its real label, given as the CT: refused, not classified."""
    out = tmp_path / "h.json"
    rc = main(["infer", "hn-response", str(realdata("pyradiomics", "brain1_image.nrrd")),
               str(realdata("pyradiomics", "brain1_label.nrrd")), "--model", str(toy_models["hn_response"]),
               "--json", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "no air or fat" in err and "not a CT" in err and not out.exists(), err


def test_phantom_commands_print_the_ceiling(tmp_path, capsys):
    for task in ("renal-mass", "pet-lymphoma", "hn-response"):
        out = tmp_path / task
        assert main(["phantoms", task, "--n", "4", "--seed", "3", "--out", str(out)]) == 0
        assert "ceiling AUC" in capsys.readouterr().out and (out / "manifest.json").exists()
    assert np.all([p.exists() for p in (tmp_path / "hn-response" / "cases").glob("*/followup.nii.gz")])


def test_an_output_that_is_an_input_is_refused_before_any_work(toy_models, toy_cohorts, tmp_path, capsys):
    """--heatmap or --json naming the CT or the mask (or the two outputs naming one file) would destroy data."""
    import shutil

    item = toy_cohorts["hn_response"][0]
    ct, mask = tmp_path / "ct.nii.gz", tmp_path / "mask.nii.gz"
    shutil.copyfile(item["image"], ct)
    shutil.copyfile(item["mask"], mask)
    before = {p: p.read_bytes() for p in (ct, mask)}
    model = ["--model", str(toy_models["hn_response"])]
    for extra, message in ((["--heatmap", str(mask)], "--heatmap"), (["--json", str(ct)], "--json"),
                           (["--json", str(tmp_path / "h.nii.gz"), "--heatmap", str(tmp_path / "h.nii.gz")],
                            "must differ")):
        capsys.readouterr()
        assert main(["infer", "hn-response", str(ct), str(mask), *model, *extra]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in (ct, mask)} == before and not (tmp_path / "h.nii.gz").exists()


def test_batch_over_classifier_cohorts(toy_models, toy_cohorts, tmp_path, capsys):
    """`oncolabel batch` over renal cases (one folder each, phantom layout) and H&N cases (a CSV): a case's
    probabilities are the single-case command's; a case missing a phase or its mask is refused by itself."""
    import csv

    renal = tmp_path / "renal" / "cases"
    renal.mkdir(parents=True)
    item = toy_cohorts["renal_mass"][0]
    shutil.copytree(_case_dir(item, "corticomedullary"), renal / "a")
    shutil.copytree(_case_dir(item, "corticomedullary"), renal / "b")
    (renal / "b" / "excretory.nii.gz").unlink()
    out = tmp_path / "renal_out"
    capsys.readouterr()
    assert main(["batch", "renal-mass", str(renal.parent), "--out", str(out), "--model",
                 str(toy_models["renal_mass"]), "--heatmaps"]) == 1
    assert "1 of 2 case(s) refused (b)" in capsys.readouterr().err
    assert main(["infer", "renal-mass", str(_case_dir(item, "corticomedullary")), "--model",
                 str(toy_models["renal_mass"]), "--json", str(tmp_path / "one.json")]) == 0
    single = json.loads((tmp_path / "one.json").read_text())
    assert json.loads((out / "a.json").read_text())["probabilities"] == single["probabilities"]
    check_same_geometry(read_image(item["corticomedullary"]), read_image(out / "a_heatmap.nii.gz"))
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["status"] for r in rows] == ["done", "refused"] and {"prediction", "p_malignant"} <= set(rows[0])
    assert "missing CT phase(s): excretory" in rows[1]["result"]
    pet = toy_cohorts["pet_lymphoma"][0]  # the phantom layout: cases/<id>/image.nii.gz
    shutil.copytree(Path(pet["image"]).parent, tmp_path / "pet" / "cases" / "p1")
    assert main(["batch", "pet-lymphoma", str(tmp_path / "pet"), "--out", str(tmp_path / "pet_out"), "--model",
                 str(toy_models["pet_lymphoma"])]) == 0
    assert main(["infer", "pet-lymphoma", pet["image"], "--model", str(toy_models["pet_lymphoma"]), "--json",
                 str(tmp_path / "pet.json")]) == 0
    assert (json.loads((tmp_path / "pet_out" / "p1.json").read_text())["probabilities"]
            == json.loads((tmp_path / "pet.json").read_text())["probabilities"])
    hn = toy_cohorts["hn_response"][:2]
    table = tmp_path / "hn.csv"
    table.write_text("case,ct,mask\n" + f"a,{hn[0]['image']},{hn[0]['mask']}\n" + f"b,{hn[1]['image']},\n")
    capsys.readouterr()
    assert main(["batch", "hn-response", str(table), "--out", str(tmp_path / "hn_out"), "--model",
                 str(toy_models["hn_response"])]) == 1
    assert "1 of 2 case(s) refused (b)" in capsys.readouterr().err
    rows = {r["case"]: r for r in csv.DictReader(open(tmp_path / "hn_out" / "summary.csv"))}
    assert rows["a"]["status"] == "done" and rows["b"]["result"] == "no mask given"


def test_renal_phases_of_a_cd_export_by_its_series_descriptions(tmp_path):
    """A CD export of the examination (DICOMDIR, PT*/ST*/SE* folders): the four phases are its series told by their
    descriptions (a topogram ignored); two series of one phase (thin and thick slices) are refused naming both."""
    from oncolabel.errors import InvalidInputError
    from oncolabel.tasks.renal_mass import PHASES, resolve_phase_inputs

    ct = realdata("dcmqi", "segmentations", "ct-3slice")
    texts = ["Topogram 0.6 T20s", "Non contrast 5mm", "ARTERIAL 1.0 B30f", "Portal venous 1.0", "Delayed 5 min"]
    cd = cd_export(tmp_path / "cd", [(ct, {"SeriesDescription": t, "SeriesNumber": k}) for k, t in enumerate(texts)])
    series = tmp_path / "cd" / "PT000000" / "ST000000"
    assert sorted(p.name for p in series.iterdir()) == [f"SE00000{k}" for k in range(5)]
    found = resolve_phase_inputs([cd])
    assert {p: found[p].name for p in PHASES} == {"unenhanced": "SE000001", "corticomedullary": "SE000002",
                                                  "nephrographic": "SE000003", "excretory": "SE000004"}
    thick = cd_export(tmp_path / "cd2", [(ct, {"SeriesDescription": t, "SeriesNumber": k})
                                         for k, t in enumerate([*texts, "Arterial 5.0 B30f"])])
    with pytest.raises(InvalidInputError, match=r"two inputs for the corticomedullary phase: SE000002 \(series "
                                                r"'ARTERIAL 1.0 B30f[^']*'\) and SE000005 \(series 'Arterial 5.0 "
                                                r"B30f[^']*'\); give the four phases one by one"):
        resolve_phase_inputs([thick])


def test_renal_phases_of_dicom_series_by_their_descriptions_never_by_folder_order(tmp_path, capsys):
    """Four series folders named by UID: their listing order was taken for the phase order (UID '...5.10' sorted
    first became the unenhanced phase). Now their SeriesDescription names the phases, or the folder is refused
    naming each series and its description; four paths given one by one keep their documented order."""
    import pydicom

    from oncolabel.errors import InvalidInputError
    from oncolabel.tasks.renal_mass import PHASES, resolve_phase_inputs

    src = realdata("dcmqi", "segmentations", "ct-3slice")
    study = tmp_path / "study"
    descriptions = {"1.2.826.0.1.5.10": "Abdomen 1.0 B30f", "1.2.826.0.1.5.2": "Abdomen 1.0 B30f",
                    "1.2.826.0.1.5.3": "Abdomen 1.0 B30f", "1.2.826.0.1.5.4": "Abdomen 1.0 B30f"}
    for uid, text in descriptions.items():
        (study / uid).mkdir(parents=True)
        for f in sorted(src.glob("*.dcm")):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID, ds.SeriesDescription = uid, text
            ds.save_as(study / uid / f.name)
    with pytest.raises(InvalidInputError, match=r"cannot tell the phases of the entries of .*study: 1.2.826.0.1.5.10 "
                                                r"\(series 'Abdomen 1.0 B30f.*'\), 1.2.826.0.1.5.2 .*their order in "
                                                r"a folder says nothing about the phases"):
        resolve_phase_inputs([study])
    assert main(["infer", "renal-mass", str(study)]) == 1 and "cannot tell the phases" in capsys.readouterr().err
    named = {"1.2.826.0.1.5.10": "Delayed 5 min", "1.2.826.0.1.5.2": "ARTERIAL 1.0 B30f",
             "1.2.826.0.1.5.3": "Non contrast 5mm", "1.2.826.0.1.5.4": "Portal venous 1.0"}
    for uid, text in named.items():
        for f in (study / uid).glob("*.dcm"):
            ds = pydicom.dcmread(f)
            ds.SeriesDescription = text
            ds.save_as(f)
    found = resolve_phase_inputs([study])
    assert {p: found[p].name for p in PHASES} == {
        "unenhanced": "1.2.826.0.1.5.3", "corticomedullary": "1.2.826.0.1.5.2", "nephrographic": "1.2.826.0.1.5.4",
        "excretory": "1.2.826.0.1.5.10"}
    given = [study / uid for uid in ("1.2.826.0.1.5.3", "1.2.826.0.1.5.2", "1.2.826.0.1.5.4", "1.2.826.0.1.5.10")]
    assert resolve_phase_inputs(given) == found  # the descriptions, whatever the order given
    (study / "mask.nii.gz").write_bytes(b"")  # other files next to the named series are ignored, as before
    assert resolve_phase_inputs([study]) == found
    # a pacs-import folder: files named by series UID, the descriptions in its pacs_series.json
    from oncolabel.pacs import FolderStore, PacsSeries

    store = FolderStore(tmp_path / "import")
    for uid, text in named.items():
        store.add(PacsSeries(study_uid="1.2.826.0.1.9", series_uid=uid, modality="CT", description=text),
                  read_image(study / uid))
    files = sorted((tmp_path / "import").glob("*.nii.gz"))  # UID order, as a shell glob gives them
    assert {p: v.name for p, v in resolve_phase_inputs(files).items()} == {p: f"{found[p].name}.nii.gz" for p in PHASES}
