"""``oncolabel report`` end to end through the CLI entry point."""

from __future__ import annotations

import json

import pytest

from oncolabel.cli import main


def test_cli_html(study_csvs, tmp_path, capsys):
    out = tmp_path / "report.html"
    rc = main(["report", "--predictions", str(study_csvs["predictions"]), "--survival", str(study_csvs["survival"]),
               "--out", str(out), "--n-boot", "100", "--time-unit", "months"])
    assert rc == 0
    assert str(out) in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 4
    assert '"n_boot": 100' in page and study_csvs["predictions"].name in page


def test_cli_pdf_from_suffix_and_png_folder(study_csvs, tmp_path):
    assert main(["report", "--predictions", str(study_csvs["predictions"]), "--out", str(tmp_path / "r.pdf"),
                 "--n-boot", "50"]) == 0
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    assert main(["report", "--survival", str(study_csvs["survival"]), "--out", str(tmp_path / "figs"),
                 "--format", "png"]) == 0
    assert (tmp_path / "figs" / "survival.png").is_file()
    prov = json.loads((tmp_path / "figs" / "provenance.json").read_text())
    assert set(prov["inputs"]) == {"survival"}


@pytest.mark.parametrize("extra, message", [
    ([], "give --predictions"),
    (["--predictions", "does-not-exist.csv"], "no such file"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, extra, message):
    assert main(["report", "--out", str(tmp_path / "x.html"), *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_refuses_to_write_the_report_over_an_input(study_csvs, capsys):
    """``--out predictions.csv`` (no .html/.pdf suffix: an HTML report) would replace the study's predictions."""
    before = study_csvs["predictions"].read_bytes()
    assert main(["report", "--predictions", str(study_csvs["predictions"]), "--out",
                 str(study_csvs["predictions"])]) == 1
    err = capsys.readouterr().err
    assert "is an input file" in err and err.count("\n") == 1
    assert study_csvs["predictions"].read_bytes() == before
