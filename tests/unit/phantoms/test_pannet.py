"""PanNET phantom: determinism, the two centres, masks, cohort files and the ceiling AUC."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.errors import InvalidInputError
from oncolabel.phantoms import read_manifest, verify_cohort
from oncolabel.phantoms.pannet import (CLINICAL_COLUMNS, PannetModel, PannetPhantomConfig, case_seed,
                                       generate_pannet_case, write_pannet_cohort)
from oncolabel.stats import roc_auc

A, B = PannetPhantomConfig(centre="A"), PannetPhantomConfig(centre="B")


def _arrays(case):
    return sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)


def test_same_seed_same_case_and_case_independent_of_cohort_size(tmp_path):
    a1, l1 = _arrays(generate_pannet_case(case_seed(7, 3), config=A))
    a2, l2 = _arrays(generate_pannet_case(case_seed(7, 3), config=A))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(l1, l2)
    a3, _ = _arrays(generate_pannet_case(case_seed(7, 4), config=A))
    assert a3.shape != a1.shape or not np.array_equal(a1, a3)
    write_pannet_cohort(tmp_path / "n2", 2, 7, config=A)
    write_pannet_cohort(tmp_path / "n5", 5, 7, config=A)
    for i in range(2):
        f2 = tmp_path / "n2" / "images" / f"pnetA_s7_{i:04d}.nii.gz"
        f5 = tmp_path / "n5" / "images" / f"pnetA_s7_{i:04d}.nii.gz"
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(f2))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(f5))))


def test_centres_share_the_patient_but_not_the_scanner():
    ca, cb = generate_pannet_case(case_seed(9, 0), config=A), generate_pannet_case(case_seed(9, 0), config=B)
    assert ca.meta["traits"] == cb.meta["traits"]  # same latent patient
    assert ca.image.GetSpacing()[2] == 2.0 and cb.image.GetSpacing()[2] == 3.0
    assert ca.image.GetSpacing()[0] < cb.image.GetSpacing()[0]
    assert cb.meta["noise_sd_hu"] > ca.meta["noise_sd_hu"] and cb.meta["psf_sigma_mm"] < ca.meta["psf_sigma_mm"]


@pytest.mark.parametrize("seed", range(6))
def test_volume_size_and_mask(seed):
    case = generate_pannet_case(case_seed(11, seed), config=A if seed % 2 else B)
    img, lab = _arrays(case)
    assert img.dtype == np.int16 and lab.dtype == np.uint8
    assert img.shape[1:] == (128, 128) and 20 <= img.shape[0] <= 48
    assert lab.sum() > 0 and set(np.unique(lab).tolist()) <= {0, 1}
    t = case.meta["traits"]
    assert 0.5 <= t["size_cm"] <= 6.0 and t["grade"] in (1, 2, 3)
    assert 0.0 < case.meta["posterior_ln"] < 1.0
    # the tumour enhances: brighter than fat, in the soft-tissue / contrast range
    assert -20 < img[lab > 0].mean() < 350


def test_generative_model_ceiling_is_sane():
    """The posterior P(LN+ | traits) is calibrated and beats every single trait (20,000 patients, traits only)."""
    model, rng = PannetModel(), np.random.default_rng(0)
    draws = [model.draw(rng) for _ in range(20000)]
    cols = {k: np.array([d[k] for d in draws], float) for k in draws[0]}
    y = cols["ln_metastasis"].astype(int)
    post = model.posterior(cols["size_cm"], cols["heterogeneity"], cols["margin"], cols["grade"],
                           cols["vascular_invasion"], cols["nodes_visible"])
    assert 0.18 < y.mean() < 0.32
    assert abs(post.mean() - y.mean()) < 0.01
    for lo, hi in ((0.0, 0.1), (0.1, 0.3), (0.3, 0.6), (0.6, 1.0)):
        sel = (post >= lo) & (post < hi)
        assert abs(y[sel].mean() - post[sel].mean()) < 0.03
    ceiling = roc_auc(y, post)
    assert 0.86 < ceiling < 0.95  # the study: 0.87-0.91
    for trait in ("size_cm", "heterogeneity", "margin", "grade", "vascular_invasion", "nodes_visible"):
        assert roc_auc(y, cols[trait]) < ceiling - 0.05
    small = cols["size_cm"] <= 2.0
    assert abs(roc_auc(y[small], post[small]) - roc_auc(y[~small], post[~small])) < 0.05


def test_cohort_files_and_manifest_ceiling(tmp_path):
    out = tmp_path / "cohort"
    paths = write_pannet_cohort(out, 12, 3, config=B)
    assert len(paths) == 12 and not verify_cohort(out)
    m = read_manifest(out)
    assert m["summary"]["cases"] == 12 and "ceiling_definition" in m["summary"]
    with open(out / "clinical.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CLINICAL_COLUMNS and len(rows) == 12
    assert {r["centre"] for r in rows} == {"B"}
    post = [json.loads((out / "lesions" / f"{r['id']}.json").read_text())["meta"]["posterior_ln"] for r in rows]
    y = [int(r["ln_metastasis"]) for r in rows]
    if 0 < sum(y) < len(y):
        assert m["summary"]["ceiling_auc"] == pytest.approx(roc_auc(y, post))
    assert all(float(r["dfs_months"]) > 0 and r["dfs_event"] in ("0", "1") for r in rows)


def test_bad_arguments():
    with pytest.raises(InvalidInputError, match="centre"):
        PannetPhantomConfig(centre="C")
    with pytest.raises(InvalidInputError, match="seed"):
        generate_pannet_case(-1)
    with pytest.raises(InvalidInputError, match="n must be"):
        write_pannet_cohort("/nonexistent", 0, 1)


def test_cli_writes_a_cohort(tmp_path, capsys):
    from oncolabel.cli import main

    rc = main(["phantoms", "pannet", "--n", "3", "--centre", "A", "--seed", "1", "--out", str(tmp_path / "c")])
    assert rc == 0 and "ceiling AUC" in capsys.readouterr().out
    assert (tmp_path / "c" / "clinical.csv").is_file()
