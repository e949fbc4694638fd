"""Report building from CSV files and in-memory data, in every output format."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.provenance import file_sha256
from oncolabel.report import (
    PredictionTable,
    ReportSettings,
    SurvivalTable,
    build_report,
    read_predictions_csv,
    read_survival_csv,
    render_figures,
    render_html,
    write_report,
)
from oncolabel.stats import delong_test, logrank_test, roc_auc_ci

FAST = ReportSettings(n_boot=200, seed=1, time_unit="months")


@pytest.fixture()
def report(study_csvs):
    return build_report(read_predictions_csv(study_csvs["predictions"]), read_survival_csv(study_csvs["survival"]),
                        title="Test study", settings=FAST, inputs=study_csvs)


def _table(report, key):
    return next(t for t in report.tables() if t.key == key)


def test_read_csvs(study_csvs):
    preds = read_predictions_csv(study_csvs["predictions"])
    assert list(preds.scores) == ["cnn", "radiomics"]
    assert preds.y_true.dtype.kind == "i" and len(preds.patient_id) == 90
    assert set(preds.subset) == {"centre A", "centre B"}
    surv = read_survival_csv(study_csvs["survival"])
    assert set(surv.group) == {"low", "high"} and surv.time.min() >= 0


def test_report_numbers_match_stats(report, study_csvs):
    preds = read_predictions_csv(study_csvs["predictions"])
    auc = _table(report, "auc")
    row = auc.rows[0]
    ref = roc_auc_ci(preds.y_true, preds.scores["cnn"])
    assert row[0] == "cnn" and row[3] == pytest.approx(ref.auc) and row[5] == pytest.approx(ref.ci_low)
    d = _table(report, "delong_paired").rows[0]
    assert d[-2] == pytest.approx(delong_test(preds.y_true, preds.scores["cnn"], preds.scores["radiomics"]).p_value)
    surv = read_survival_csv(study_csvs["survival"])
    lr = _table(report, "logrank").rows[0]
    assert lr[2] == pytest.approx(logrank_test(surv.time, surv.event, surv.group).p_value)
    assert {t.key for t in report.tables()} >= {"auc", "roc_band", "delong_paired", "auc_subset", "delong_unpaired",
                                               "operating", "calibration", "calibration_bins", "decision",
                                               "km_summary", "logrank", "cox", "at_risk", "km_steps"}
    assert set(report.figures()) == {"roc", "calibration", "decision", "survival"}


def test_provenance_records_versions_hashes_settings(report, study_csvs):
    prov = report.provenance
    assert prov["notice"] == RESEARCH_USE_ONLY
    assert prov["inputs"]["predictions"]["sha256"] == file_sha256(study_csvs["predictions"])
    assert prov["inputs"]["survival"]["sha256"] == file_sha256(study_csvs["survival"])
    assert prov["settings"]["n_boot"] == 200 and prov["settings"]["seed"] == 1
    assert "numpy" in prov["software"] and "matplotlib" in prov["report_software"]


def test_html_is_self_contained_and_labelled(report):
    page = render_html(report)
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert len(imgs) == 4 and all(src.startswith("data:image/png;base64,") for src in imgs)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count(RESEARCH_USE_ONLY) >= 4 + len(report.tables())  # each figure and table
    assert "Provenance" in page


def test_write_every_format(report, tmp_path):
    html = write_report(report, tmp_path / "r.html")
    assert html[0].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    pdf = write_report(report, tmp_path / "r.pdf", "pdf")
    assert pdf[0].read_bytes()[:5] == b"%PDF-"
    files = write_report(report, tmp_path / "png", "png")
    names = {p.name for p in files}
    assert {"roc.png", "calibration.png", "decision.png", "survival.png", "provenance.json", "auc.csv"} <= names
    assert (tmp_path / "png" / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "png" / "provenance.json").read_text())["notice"] == RESEARCH_USE_ONLY
    svg = render_figures(report, tmp_path / "svg", "svg")
    assert (tmp_path / "svg" / "roc.svg").read_text().lstrip().startswith("<?xml")
    assert len(svg) == len(files)
    with pytest.raises(InvalidInputError, match="format"):
        write_report(report, tmp_path / "r.doc", "doc")


def test_in_memory_api_scores_not_probabilities():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    preds = PredictionTable.from_arrays(y, {"logit": y * 2.0 + rng.normal(size=60)})
    rep = build_report(preds, settings=FAST)
    keys = [s.key for s in rep.sections]
    assert keys == ["roc", "delong", "operating", "calibration"]  # no decision curve for non-probabilities
    cal = next(s for s in rep.sections if s.key == "calibration")
    assert cal.figure is None and "not probabilities" in cal.notes[0]
    assert "nothing to compare" in next(s for s in rep.sections if s.key == "delong").notes[0]


def test_survival_only_report(tmp_path):
    surv = SurvivalTable.from_arrays([5, 8, 12, 3, 9, 14, 20], [1, 0, 1, 1, 1, 0, 1], list("aaabbbb"))
    rep = build_report(survival=surv, settings=FAST)
    assert [s.key for s in rep.sections] == ["survival"]
    assert write_report(rep, tmp_path / "s.html")[0].stat().st_size > 1000


def test_subset_rows_explain_what_cannot_be_computed():
    y = np.array([0, 1, 0, 1, 0, 1, 1, 1, 1])
    preds = PredictionTable.from_arrays(y, {"m": np.linspace(0.1, 0.9, 9)}, subset=list("aaaaaabbb"))
    rep = build_report(preds, settings=FAST)
    per = {r[1]: r for r in _table(rep, "auc_subset").rows}
    assert per["a"][4] is not None and per["b"][4] is None and "negative" in per["b"][-1]


@pytest.mark.parametrize("csv_text, match", [
    ("patient_id,y_true\nA,1\nB,0\n", "no score column"),
    ("patient_id,score_m\nA,0.1\n", "y_true"),
    ("patient_id,y_true,score_m\nA,1,0.3\nA,0,0.2\n", "unique"),
    ("patient_id,y_true,score_m\nA,1,0.3\nB,2,0.2\n", "0/1"),
    ("patient_id,y_true,score_m\nA,1,\nB,0,0.2\n", "NaN"),
])
def test_bad_prediction_csv(tmp_path, csv_text, match):
    path = tmp_path / "p.csv"
    path.write_text(csv_text)
    with pytest.raises(InvalidInputError, match=match):
        read_predictions_csv(path)


def test_bad_survival_csv_and_missing_file(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("patient_id,time,event\nA,1,1\n")
    with pytest.raises(InvalidInputError, match="group"):
        read_survival_csv(path)
    with pytest.raises(InvalidInputError, match="no such file"):
        read_predictions_csv(tmp_path / "missing.csv")
    with pytest.raises(InvalidInputError, match="needs predictions"):
        build_report()


def test_matplotlib_backend_untouched(report):
    import matplotlib

    before = matplotlib.get_backend()
    render_html(report)
    assert matplotlib.get_backend() == before


@pytest.mark.parametrize("kwargs", [{"alpha": 0}, {"n_boot": 3}, {"dca_thresholds": (0.0, 0.5)},
                                    {"calibration_bins": 0}])
def test_bad_settings(kwargs):
    with pytest.raises(InvalidInputError):
        ReportSettings(**kwargs)
