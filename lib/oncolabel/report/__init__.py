"""Study reports: statistics, figures and tables of numbers as HTML, PDF or PNG (research use only).

Typical use with in-memory data::

    from oncolabel.report import PredictionTable, build_report, write_report
    preds = PredictionTable.from_arrays(y_true, {"resnet": p1, "radiomics": p2}, patient_id=ids)
    report = build_report(preds, title="Task 2: malignancy")
    write_report(report, "report.html")

The CSV formats read by ``oncolabel report`` are described in :mod:`oncolabel.report.data`.
"""

from __future__ import annotations

from oncolabel.report.build import Report, ReportSettings, Section, Table, build_report
from oncolabel.report.data import (
    PredictionTable,
    SurvivalTable,
    read_predictions_csv,
    read_survival_csv,
)
from oncolabel.report.html import FORMATS, render_figures, render_html, write_report

__all__ = [
    "FORMATS", "PredictionTable", "SurvivalTable", "Report", "ReportSettings", "Section", "Table",
    "build_report", "read_predictions_csv", "read_survival_csv", "render_figures", "render_html", "write_report",
]
