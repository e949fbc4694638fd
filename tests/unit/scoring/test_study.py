"""The study runner: cohort loading, the internal split, Platt scaling; an end-to-end run (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oncolabel.errors import InvalidInputError
from oncolabel.phantoms.pannet import PannetPhantomConfig, write_pannet_cohort
from oncolabel.scoring.study import StudySettings, _split_internal, load_cohort, platt, run_study


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    write_pannet_cohort(root / "A", 44, 5, config=PannetPhantomConfig(centre="A"))
    write_pannet_cohort(root / "B", 30, 6, config=PannetPhantomConfig(centre="B"))
    return root / "A", root / "B"


def test_load_cohort_and_split(cohorts):
    a = load_cohort(cohorts[0])
    assert len(a.clinical) == 44 and a.posterior is not None and a.ceiling_auc is not None
    assert {"image", "mask", "ln_metastasis", "size_cm"} <= set(a.clinical.columns)
    tr, it = _split_internal(a, StudySettings())
    assert not set(tr) & set(it) and len(tr) + len(it) == 44
    assert 0.2 <= len(it) / 44 <= 0.4 and a.clinical.loc[it, "ln_metastasis"].sum() >= 1


def test_load_cohort_refuses_missing_outcomes(cohorts, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(cohorts[1], bad)
    text = (bad / "clinical.csv").read_text().splitlines()
    head = text[0].split(",")
    col = head.index("ln_metastasis")
    row = text[1].split(",")
    row[col] = ""
    (bad / "clinical.csv").write_text("\n".join([text[0], ",".join(row), *text[2:]]) + "\n")
    with pytest.raises(InvalidInputError, match="ln_metastasis is missing"):
        load_cohort(bad)
    with pytest.raises(InvalidInputError, match="no clinical.csv"):
        load_cohort(tmp_path)


def test_platt_recovers_a_known_recalibration():
    rng = np.random.default_rng(0)
    s = rng.normal(0, 2, 4000)
    y = (rng.uniform(size=s.size) < 1 / (1 + np.exp(-(0.5 + 0.7 * s)))).astype(int)
    a, b = platt(s, y)
    assert a == pytest.approx(0.5, abs=0.12) and b == pytest.approx(0.7, abs=0.08)


@pytest.mark.slow
def test_end_to_end_small_study(cohorts, tmp_path):
    cfg = StudySettings(n_folds=2, cnn_iterations=3, n_boot=20, methods=("logistic", "glmboost"), n_jobs=1,
                        deep_cross_fit=2)
    res = run_study(*cohorts, settings=cfg, report=tmp_path / "r.html", export_model=tmp_path / "m.pt",
                    cache=tmp_path / "cache")
    assert set(res.auc) == {"training", "internal", "external"}
    assert (tmp_path / "r.html").read_text().count("research use only") > 3
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["sha256"] == res.model.checkpoint.sha256 and any("phantoms pannet" in c for c in card["reproduce"])
    assert {r["method"] for r in res.comparison} == {"logistic", "glmboost", "glmboost:radiomics", "glmboost:deep"}
    # a re-run reads the radiomics from the cache
    msgs = []
    run_study(*cohorts, settings=cfg, progress=msgs.append, cache=tmp_path / "cache")
    assert sum("from cache" in m for m in msgs) == 3
