"""The frozen RDP model, the 2 cm rule, and the ``oncolabel score pannet-ln`` command (contract and bad inputs)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from oncolabel.checkpoint import Checkpoint, save_checkpoint
from oncolabel.cli import main
from oncolabel.errors import CheckpointError, GeometryError, InvalidInputError
from oncolabel.scoring.models import model_pipeline
from oncolabel.scoring.rdp import RdpHead, RdpModel, recommendation


def test_head_reproduces_the_fitted_pipeline():
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(120, 8)) * [1, 5, 2, 1, 1, 3, 1, 1] + 10,
                     columns=[f"rad:f{i}" for i in range(6)] + ["deep:0", "deep:1"])
    y = (x["rad:f0"] - x["deep:1"] + rng.normal(0, 0.7, 120) > 0).astype(int).to_numpy()
    pipe = model_pipeline("glmboost").fit(x, y)
    head = RdpHead.from_pipeline(pipe, calib_intercept=0.2, calib_slope=1.5, threshold=0.4)
    lp = np.array([head.linear_predictor(r) for r in x.to_dict("records")])
    np.testing.assert_allclose(lp, pipe.decision_function(x), atol=1e-9)
    s = head.score(x.iloc[0].to_dict())
    assert s == pytest.approx(1 / (1 + np.exp(-(0.2 + 1.5 * lp[0]))))
    contrib = head.contributions(x.iloc[0].to_dict())
    assert sum(c["contribution_log_odds"] for c in contrib) == pytest.approx(lp[0] - head.intercept)
    assert abs(contrib[0]["contribution_log_odds"]) >= abs(contrib[-1]["contribution_log_odds"])
    assert RdpHead.from_dict(head.to_dict()) == head
    with pytest.raises(InvalidInputError, match="missing"):
        head.score({})
    with pytest.raises(InvalidInputError, match="not a linear model"):
        RdpHead.from_pipeline(model_pipeline("random_forest").fit(x, y))


@pytest.mark.parametrize("group, size, expected", [
    ("low", 1.5, "follow-up (surveillance) or minimal enucleation"),
    ("high", 2.0, "standard oncological resection"),
    ("low", 2.1, "enucleation (parenchyma-sparing)"),
    ("high", 4.0, "standard oncological resection"),
])
def test_two_centimetre_rule(group, size, expected):
    text = recommendation(group, size)
    assert text.startswith(expected) and "research use only" in text
    assert ("<= 2 cm" in text) == (size <= 2.0)


def test_rule_and_head_refuse_bad_values():
    with pytest.raises(InvalidInputError):
        recommendation("medium", 1.0)
    with pytest.raises(InvalidInputError):
        recommendation("low", -1.0)
    with pytest.raises(InvalidInputError, match="threshold"):
        RdpHead(features=("a",), mean=(0.0,), scale=(1.0,), coef=(1.0,), intercept=0.0, threshold=1.5)
    with pytest.raises(InvalidInputError, match="scale"):
        RdpHead(features=("a",), mean=(0.0,), scale=(0.0,), coef=(1.0,), intercept=0.0)


def test_model_file_round_trip_and_refusals(tiny_rdp_model, tmp_path):
    m = RdpModel.load(tiny_rdp_model)
    assert m.version == m.checkpoint.sha256[:12] and m.head.threshold == 0.3
    ck = m.checkpoint
    save_checkpoint(Checkpoint(task="bone_metastasis", network=ck.network, preprocessing=ck.preprocessing,
                               state_dict=ck.state_dict, training=ck.training), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="pannet_ln"):
        RdpModel.load(tmp_path / "other.pt")
    save_checkpoint(Checkpoint(task="pannet_ln", network=ck.network, preprocessing=ck.preprocessing,
                               state_dict=ck.state_dict, training={}), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an RDP model"):
        RdpModel.load(tmp_path / "plain.pt")
    changed = {**dict(ck.preprocessing), "crop_mm": 1.0}
    save_checkpoint(Checkpoint(task="pannet_ln", network=ck.network, preprocessing=changed,
                               state_dict=ck.state_dict, training=ck.training), tmp_path / "changed.pt")
    with pytest.raises(CheckpointError, match="other preprocessing"):
        RdpModel.load(tmp_path / "changed.pt")


def test_predict_json(tiny_rdp_model, pannet_cases):
    image, mask = pannet_cases[0]
    res = RdpModel.load(tiny_rdp_model).predict(image, mask)
    out = res.to_json()
    assert out["notice"].startswith("research use only") and out["task"] == "pannet_ln"
    assert 0 < out["score"] < 1 and out["risk_group"] in ("low", "high")
    assert out["size_source"].startswith("measured") and out["size_cm"] > 0
    assert len(out["top_contributions"]) == 3 and out["model_version"] == res.model_version
    assert out["provenance"]["radiomics"]["software"]["pyradiomics"]
    given = RdpModel.load(tiny_rdp_model).predict(image, mask, size_cm=1.0).to_json()
    assert given["size_cm"] == 1.0 and given["size_group"] == "<= 2 cm" and given["size_source"] == "given"
    measured = out["size_cm"]
    assert given["measured_size_cm"] == measured and "warnings" not in out
    # the treatment suggestion turns on the 2 cm rule: a given size across it from the mask's is named
    across = 1.0 if measured > 2.0 else 3.0
    got = RdpModel.load(tiny_rdp_model).predict(image, mask, size_cm=across).to_json()
    assert got["warnings"] == [f"the given size {across:.1f} cm and the mask's maximum 3D diameter {measured:.1f} cm "
                               "lie on different sides of the 2 cm rule: the suggestion follows the given size; check "
                               "the size and the mask"]
    same_side = RdpModel.load(tiny_rdp_model).predict(image, mask,
                                                      size_cm=measured + (0.3 if measured > 2.0 else -0.3)).to_json()
    assert "warnings" not in same_side


def test_score_cli_contract(tiny_rdp_model, pannet_cases, tmp_path, capsys):
    image, mask = pannet_cases[1]
    out = tmp_path / "r.json"
    rc = main(["score", "pannet-ln", str(image), str(mask), "--model", str(tiny_rdp_model), "--size-cm", "2.5",
               "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr()
    assert "RDP score" in printed.out and "research use only" in printed.out
    data = json.loads(out.read_text())
    assert data["size_cm"] == 2.5 and data["image"] == str(image) and "recommendation" in data
    across = data["measured_size_cm"] <= 2.0  # 2.5 given: the stdout line stays one line, stderr names the conflict
    assert len(printed.out.strip().splitlines()) == 1
    assert ("warning: the given size 2.5 cm and the mask's maximum 3D diameter" in printed.err) == across
    assert data.get("warnings", []) == ([printed.err.strip()[len("warning: "):]] if across else [])
    m = sitk.ReadImage(str(mask))  # the mask cropped to the tumour, as 3D Slicer stores a .seg.nrrd: the same score
    zs, ys, xs = np.nonzero(sitk.GetArrayViewFromImage(m))
    crop = sitk.RegionOfInterest(m, [int(np.ptp(xs)) + 3, int(np.ptp(ys)) + 3, int(np.ptp(zs)) + 1],
                                 [int(xs.min()) - 1, int(ys.min()) - 1, int(zs.min())])
    assert crop.GetSize() != m.GetSize()
    sitk.WriteImage(crop, str(tmp_path / "tumour.seg.nrrd"))
    assert main(["score", "pannet-ln", str(image), str(tmp_path / "tumour.seg.nrrd"), "--model", str(tiny_rdp_model),
                 "--size-cm", "2.5", "--json", str(tmp_path / "c.json")]) == 0
    again = json.loads((tmp_path / "c.json").read_text())
    assert {k: v for k, v in again.items() if k != "mask"} == {k: v for k, v in data.items() if k != "mask"}


def test_score_cli_bad_inputs(tiny_rdp_model, pannet_cases, tmp_path, capsys):
    image, mask = pannet_cases[0]
    other_image, other_mask = pannet_cases[1]
    m = sitk.ReadImage(str(mask))
    empty = sitk.Image(m.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(m)
    sitk.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(image)), sitk.sitkInt16) + 1024, str(tmp_path / "raw.nii.gz"))
    sitk.WriteImage(sitk.Cast(m, sitk.sitkFloat32) * 0.9 + 0.05, str(tmp_path / "prob.nii.gz"))
    sitk.WriteImage(sitk.Cast(m > 0, sitk.sitkUInt8) * 255, str(tmp_path / "m255.nii.gz"))
    cases = [
        ([str(tmp_path / "raw.nii.gz"), str(mask)], "no air or fat"),  # CT values without their rescale intercept
        ([str(image), str(tmp_path / "prob.nii.gz")], "the tumour mask holds fractional values"),  # a probability map
        ([str(image), str(tmp_path / "m255.nii.gz")], "holds label(s) [255]: relabel the tumour 1"),  # said "empty"
        ([str(image), str(tmp_path / "empty.nii.gz")], "empty"),
        ([str(image), str(other_mask)], "differs from the image"),
        ([str(image), str(tmp_path / "missing.nii.gz")], "no such file"),
        ([str(image), str(mask), "--size-cm", "-2"], "size_cm"),
    ]
    own_mask = tmp_path / "own_mask.nii.gz"  # --json naming the mask would replace it
    own_mask.write_bytes(mask.read_bytes())
    assert main(["score", "pannet-ln", str(image), str(own_mask), "--model", str(tiny_rdp_model),
                 "--json", str(own_mask)]) == 1
    assert "is an input file" in capsys.readouterr().err and own_mask.read_bytes() == mask.read_bytes()
    for args, message in cases:
        out = tmp_path / "never.json"
        rc = main(["score", "pannet-ln", *args, "--model", str(tiny_rdp_model), "--json", str(out)])
        err = capsys.readouterr().err
        assert rc == 1 and message in err, (args, err)
        assert not out.exists()
    with pytest.raises(GeometryError):
        RdpModel.load(tiny_rdp_model).predict(image, other_mask)


def test_model_with_cross_fitted_cnns_round_trips(tiny_rdp_model, pannet_cases, tmp_path):
    import torch

    from oncolabel.features.deep import merge_checkpoints, models_from_checkpoint

    base = RdpModel.load(tiny_rdp_model)
    torch.manual_seed(1)
    other = replace(base.checkpoint, state_dict=base.spec.network.build().state_dict())
    merged = merge_checkpoints([base.checkpoint, other])
    m = RdpModel.build(merged, base.head)
    m.save(tmp_path / "two.pt")
    loaded = RdpModel.load(tmp_path / "two.pt")
    assert len(loaded.cnns) == 2
    image, mask = pannet_cases[0]
    values, _ = loaded.features(sitk.ReadImage(str(image)), sitk.ReadImage(str(mask)))
    x = torch.from_numpy(loaded.spec.preprocessing.prepare(sitk.ReadImage(str(image)), sitk.ReadImage(str(mask))))[None]
    with torch.inference_mode():
        logits = [float(n(x)[0, 1] - n(x)[0, 0]) for n in models_from_checkpoint(merged)]
    assert values["deep:logit"] == pytest.approx(np.mean(logits), abs=1e-5)


@pytest.mark.parametrize("code", ["RAS", "PIL"])
def test_cnn_input_does_not_depend_on_how_the_file_stores_its_axes(tiny_rdp_model, pannet_cases, code):
    """The same physical CT and mask stored with other axes (RAS as converters write NIfTI, or permuted) give the
    CNN the same planes: the crop follows the patient's axes and the largest axial slice, not the file's."""
    prep = RdpModel.load(tiny_rdp_model).spec.preprocessing
    image, mask = (sitk.ReadImage(str(p)) for p in pannet_cases[0])
    expected = prep.prepare(image, mask)
    turned = prep.prepare(sitk.DICOMOrient(image, code), sitk.DICOMOrient(mask, code))
    np.testing.assert_allclose(turned, expected, atol=1e-4)


def test_batch_scores_a_cohort_folder_as_score_does(tiny_rdp_model, pannet_cases, tmp_path, capsys):
    """`oncolabel batch pannet-ln` over images/ + labels/ (the phantom cohort layout): each case's JSON is what
    `score pannet-ln` writes for it; summary.csv carries the score, risk group and suggestion."""
    import csv
    import shutil

    for name in ("images", "labels"):
        (tmp_path / "cohort" / name).mkdir(parents=True)
    for image, mask in pannet_cases[:2]:
        shutil.copy(image, tmp_path / "cohort" / "images" / image.name)
        shutil.copy(mask, tmp_path / "cohort" / "labels" / image.name)
    out = tmp_path / "out"
    assert main(["batch", "pannet-ln", str(tmp_path / "cohort"), "--out", str(out), "--model",
                 str(tiny_rdp_model)]) == 0
    rows = {r["case"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert [r["status"] for r in rows.values()] == ["done", "done"]
    image, mask = pannet_cases[0]
    row = rows[image.name[: -len(".nii.gz")]]
    assert main(["score", "pannet-ln", str(image), str(mask), "--model", str(tiny_rdp_model), "--json",
                 str(tmp_path / "one.json")]) == 0
    single = json.loads((tmp_path / "one.json").read_text())
    batch = json.loads((out / f"{row['case']}.json").read_text())
    assert batch["score"] == single["score"] and float(row["score"]) == single["score"]
    assert row["recommendation"] == single["recommendation"] and row["risk_group"] == single["risk_group"]
    assert main(["batch", "pannet-ln", str(tmp_path / "cohort"), "--out", str(out), "--model",
                 str(tiny_rdp_model)]) == 0  # run again: both found done by this model, nothing redone
    assert {r["status"] for r in csv.DictReader(open(out / "summary.csv"))} == {"already done"}


def test_score_reads_the_tumour_from_an_rtstruct(tiny_rdp_model, pannet_cases, tmp_path):
    """`score pannet-ln IMAGE RS.dcm`: the tumour structure of an RT Structure Set (or a DICOM SEG) gives the score
    of the same mask as a label file, and the JSON says which structure was read."""
    from oncolabel.io import read_image
    from tests.conftest import rtstruct_boxes

    image, mask = pannet_cases[0]
    boxed = rtstruct_boxes(read_image(image), read_image(mask), tmp_path / "RS.dcm", name="Tumour")
    sitk.WriteImage(boxed, str(tmp_path / "box.nii.gz"))
    for name, extra in (("rs", ["--roi", "tumour"]), ("box", [])):
        source = tmp_path / ("RS.dcm" if name == "rs" else "box.nii.gz")
        assert main(["score", "pannet-ln", str(image), str(source), "--model", str(tiny_rdp_model), "--json",
                     str(tmp_path / f"{name}.json"), *extra]) == 0
    rs, box = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("rs", "box"))
    assert rs["score"] == box["score"] and rs["mask_read_as"] == {"source": "RTSTRUCT", "structure": "Tumour"}
