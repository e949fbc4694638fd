"""Compute a study report: every statistic, every figure, every table of numbers.

:func:`build_report` is the one entry point; other tasks call it with in-memory data
(:class:`PredictionTable`, :class:`SurvivalTable`), the CLI with tables read from CSV. The result
(:class:`Report`) is plain data that :mod:`oncolabel.report.html` renders as HTML, PDF or PNG.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.provenance import package_versions, provenance
from oncolabel.report import figures
from oncolabel.report.data import PredictionTable, SurvivalTable
from oncolabel.stats import (
    calibration,
    cox_fit,
    delong_test,
    delong_test_unpaired,
    diagnostic_metrics,
    kaplan_meier,
    logrank_test,
    net_benefit,
    number_at_risk,
    roc_auc_ci,
    roc_curve,
    roc_curve_band,
    youden_threshold,
)
from oncolabel.stats._validation import as_float, check_alpha, check_positive_int

_REPORT_PACKAGES = ("numpy", "scipy", "pandas", "matplotlib", "lifelines", "scikit-learn")


@dataclass(frozen=True)
class ReportSettings:
    """Settings of a report; all recorded in its provenance.

    Attributes
    ----------
    alpha : float
        1 - confidence level of every interval.
    n_boot : int
        Bootstrap replicates for the AUC CI and the ROC bands.
    seed : int
        Seed of every bootstrap.
    dca_thresholds : tuple of float
        Threshold probabilities of the decision curves.
    calibration_bins : int
        Equal-width bins of the reliability curve.
    time_unit : str
        Label of the survival time axis.
    """

    alpha: float = 0.05
    n_boot: int = 2000
    seed: int = 0
    dca_thresholds: tuple[float, ...] = tuple(np.round(np.arange(0.01, 1.0, 0.01), 2).tolist())
    calibration_bins: int = 10
    time_unit: str = ""

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        check_positive_int(self.n_boot, "n_boot", minimum=10)
        check_positive_int(self.calibration_bins, "calibration_bins")
        pts = as_float(self.dca_thresholds, "dca_thresholds")
        if pts.min() <= 0 or pts.max() >= 1:
            raise InvalidInputError("dca_thresholds must lie strictly between 0 and 1")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dca_thresholds"] = [min(self.dca_thresholds), max(self.dca_thresholds), len(self.dca_thresholds)]
        return d


@dataclass(frozen=True)
class Table:
    """A table of numbers (raw values; renderers format them). ``None`` cells mean "undefined"."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""
    collapsed: bool = False


@dataclass(frozen=True)
class Section:
    """One part of the report: an optional figure, its caption, and the tables of its numbers."""

    key: str
    title: str
    figure: Any = None  # matplotlib Figure
    caption: str = ""
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """A rendered-ready study report."""

    title: str
    sections: tuple[Section, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    notice: str = RESEARCH_USE_ONLY

    def figures(self) -> dict[str, Any]:
        """Section key -> matplotlib Figure, for the sections that have one."""
        return {s.key: s.figure for s in self.sections if s.figure is not None}

    def tables(self) -> list[Table]:
        return [t for s in self.sections for t in s.tables]


def _try(func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """(result, None), or (None, reason) when the data do not allow the statistic."""
    try:
        return func(*args, **kwargs), None
    except InvalidInputError as exc:
        return None, str(exc)


def _is_probability(s: np.ndarray) -> bool:
    return bool(s.min() >= 0.0 and s.max() <= 1.0)


# --------------------------------------------------------------------------- predictions


def _roc_section(pred: PredictionTable, cfg: ReportSettings) -> tuple[Section, dict[str, Any]]:
    y, curves, rows, band_rows = pred.y_true, {}, [], []
    pct = int(round(100 * (1 - cfg.alpha)))
    for name, s in pred.scores.items():
        dl = roc_auc_ci(y, s, alpha=cfg.alpha)
        bs = roc_auc_ci(y, s, method="bootstrap", alpha=cfg.alpha, n_boot=cfg.n_boot, random_state=cfg.seed)
        band = roc_curve_band(y, s, alpha=cfg.alpha, n_boot=cfg.n_boot, random_state=cfg.seed)
        curves[name] = (roc_curve(y, s), band, dl)
        rows.append((name, dl.n_pos, dl.n_neg, dl.auc, dl.se, dl.ci_low, dl.ci_high, bs.ci_low, bs.ci_high))
        band_rows += [(name, f, t, lo, hi) for f, t, lo, hi in zip(band.fpr, band.tpr, band.tpr_low, band.tpr_high)]
    cols = ("model", "cases", "controls", "AUC", "SE (DeLong)", f"{pct}% CI low (DeLong)",
            f"{pct}% CI high (DeLong)", f"{pct}% CI low (bootstrap)", f"{pct}% CI high (bootstrap)")
    tables = (Table("auc", "AUC per model", cols, tuple(rows),
                    note=f"Bootstrap: stratified percentile, {cfg.n_boot} replicates, seed {cfg.seed}."),
              Table("roc_band", "ROC curve and pointwise band (plotted values)",
                    ("model", "1 - specificity", "sensitivity", "band low", "band high"), tuple(band_rows),
                    collapsed=True))
    fig = figures.roc_figure(curves)
    caption = (f"ROC curves; shaded: pointwise {pct}% stratified bootstrap band of sensitivity at fixed "
               f"specificity ({cfg.n_boot} replicates). Legend CI: DeLong.")
    return Section("roc", "ROC curves", fig, caption, tables), curves


def _delong_tables(pred: PredictionTable, cfg: ReportSettings) -> Section:
    pct = int(round(100 * (1 - cfg.alpha)))
    paired = []
    for a, b in itertools.combinations(pred.scores, 2):
        res, why = _try(delong_test, pred.y_true, pred.scores[a], pred.scores[b], alpha=cfg.alpha)
        paired.append((a, b, None, None, None, None, None, None, None, why) if res is None else
                      (a, b, res.auc_a, res.auc_b, res.diff, res.ci_low, res.ci_high, res.statistic, res.p_value, ""))
    tables = []
    if paired:
        tables.append(Table("delong_paired", "Paired DeLong tests between models (same patients)",
                            ("model A", "model B", "AUC A", "AUC B", "A - B", f"{pct}% CI low", f"{pct}% CI high",
                             "Z", "p (two-sided)", "note"), tuple(paired)))
    if pred.subset is not None:
        tables += _subset_tables(pred, cfg)
    notes = () if tables else ("Only one model and no subsets: nothing to compare.",)
    return Section("delong", "Comparisons (DeLong)", None, "", tuple(tables), notes)


def _subset_tables(pred: PredictionTable, cfg: ReportSettings) -> list[Table]:
    pct = int(round(100 * (1 - cfg.alpha)))
    subsets = sorted(set(pred.subset.tolist()))
    per, unpaired = [], []
    for name, s in pred.scores.items():
        for sub in subsets:
            m = pred.subset == sub
            res, why = _try(roc_auc_ci, pred.y_true[m], s[m], alpha=cfg.alpha)
            per.append((name, sub, int(pred.y_true[m].sum()), int((pred.y_true[m] == 0).sum()),
                        *((None,) * 3 if res is None else (res.auc, res.ci_low, res.ci_high)), why or ""))
        for a, b in itertools.combinations(subsets, 2):
            ma, mb = pred.subset == a, pred.subset == b
            shared = set(pred.patient_id[ma].tolist()) & set(pred.patient_id[mb].tolist())
            if shared:
                res, why = None, f"{len(shared)} patient(s) in both subsets: the unpaired test does not apply"
            else:
                res, why = _try(delong_test_unpaired, pred.y_true[ma], s[ma], pred.y_true[mb], s[mb])
            unpaired.append((name, a, b, *((None,) * 5 if res is None else
                                           (res.auc_a, res.auc_b, res.statistic, res.df, res.p_value)), why or ""))
    return [Table("auc_subset", "AUC per subset", ("model", "subset", "cases", "controls", "AUC",
                                                   f"{pct}% CI low", f"{pct}% CI high", "note"), tuple(per)),
            Table("delong_unpaired", "Unpaired DeLong tests between subsets (pROC convention: t, Welch df)",
                  ("model", "subset A", "subset B", "AUC A", "AUC B", "D", "df", "p (two-sided)", "note"),
                  tuple(unpaired))]


def _operating_section(pred: PredictionTable, cfg: ReportSettings) -> Section:
    rows = []
    for name, s in pred.scores.items():
        thr = youden_threshold(pred.y_true, s)
        d = diagnostic_metrics(pred.y_true, s, threshold=thr.threshold, alpha=cfg.alpha)
        cells: list[Any] = [name, thr.threshold, d.tp, d.fp, d.tn, d.fn]
        for p in (d.sensitivity, d.specificity, d.ppv, d.npv):
            cells += [None, None, None] if p is None else [p.estimate, p.ci_low, p.ci_high]
        rows.append(tuple(cells))
    cols = ["model", "threshold", "TP", "FP", "TN", "FN"]
    for m in ("sensitivity", "specificity", "PPV", "NPV"):
        cols += [m, f"{m} CI low", f"{m} CI high"]
    note = ("Threshold maximising Youden's J on these data (optimistic: fix thresholds on separate data). "
            "Positive when score >= threshold. Wilson intervals.")
    return Section("operating", "Operating points", None, "",
                   (Table("operating", "Sensitivity, specificity, PPV, NPV at the Youden threshold", tuple(cols),
                          tuple(rows), note=note),))


def _calibration_section(pred: PredictionTable, cfg: ReportSettings) -> Section | None:
    results, notes, summary, bins = {}, [], [], []
    pct = int(round(100 * (1 - cfg.alpha)))
    for name, s in pred.scores.items():
        if not _is_probability(s):
            notes.append(f"{name}: scores are not probabilities in [0, 1]; calibration not assessed.")
            continue
        res, why = _try(calibration, pred.y_true, s, n_bins=cfg.calibration_bins, alpha=cfg.alpha)
        if res is None:
            notes.append(f"{name}: {why}")
            continue
        results[name] = res
        summary.append((name, res.n, res.brier, res.intercept, *res.intercept_ci, res.slope, *res.slope_ci,
                        res.observed_expected))
        c = res.curve
        bins += [(name, *e, n, mp, ob, lo, hi) for e, n, mp, ob, lo, hi in
                 zip(c.bin_edges.tolist(), c.counts, c.mean_predicted, c.observed, c.ci_low, c.ci_high)]
    if not results and not notes:
        return None
    tables = (Table("calibration", "Calibration summary",
                    ("model", "n", "Brier", "intercept", f"intercept {pct}% CI low", f"intercept {pct}% CI high",
                     "slope", f"slope {pct}% CI low", f"slope {pct}% CI high", "observed / expected"),
                    tuple(summary), note="Intercept: calibration-in-the-large (ideal 0); slope ideal 1."),
              Table("calibration_bins", "Reliability curve (plotted values)",
                    ("model", "bin low", "bin high", "n", "mean predicted", "observed", "CI low", "CI high"),
                    tuple(bins), collapsed=True))
    fig = figures.calibration_figure(results) if results else None
    caption = f"Reliability curves: {cfg.calibration_bins} equal-width bins; bars: Wilson {pct}% CI."
    return Section("calibration", "Calibration", fig, caption, tables if results else (), tuple(notes))


def _decision_section(pred: PredictionTable, cfg: ReportSettings) -> Section | None:
    probs = {n: s for n, s in pred.scores.items() if _is_probability(s)}
    if not probs:
        return None
    curves = {n: net_benefit(pred.y_true, s, cfg.dca_thresholds) for n, s in probs.items()}
    names = list(curves)
    rows = tuple((r0.threshold, *(curves[n][i].model for n in names), r0.treat_all, r0.treat_none)
                 for i, r0 in enumerate(curves[names[0]]))
    table = Table("decision", "Net benefit (plotted values)",
                  ("threshold", *[f"net benefit {n}" for n in names], "treat all", "treat none"), rows,
                  note="Positive when score >= threshold (Vickers & Elkin 2006).", collapsed=True)
    skipped = tuple(f"{n}: scores are not probabilities; no decision curve." for n in pred.scores if n not in probs)
    return Section("decision", "Decision curves", figures.decision_figure(curves),
                   "Net benefit against threshold probability.", (table,), skipped)


# --------------------------------------------------------------------------- survival


def _survival_section(surv: SurvivalTable, cfg: ReportSettings) -> Section:
    groups = sorted(set(surv.group.tolist()))
    kms = {g: kaplan_meier(surv.time[surv.group == g], surv.event[surv.group == g], alpha=cfg.alpha) for g in groups}
    lr, lr_why = _try(logrank_test, surv.time, surv.event, surv.group)
    ticks = figures.nice_ticks(float(surv.time.max()))
    at_risk = {g: number_at_risk(surv.time[surv.group == g], ticks).tolist() for g in groups}
    pct = int(round(100 * (1 - cfg.alpha)))
    summary = tuple((g, int((surv.group == g).sum()), int(kms[g].events.sum()), kms[g].median, *kms[g].median_ci)
                    for g in groups)
    tables = [Table("km_summary", "Kaplan-Meier summary",
                    ("group", "patients", "events", "median", f"median {pct}% CI low", f"median {pct}% CI high"),
                    summary, note="Median: first time with S(t) <= 0.5; empty = not reached.")]
    if lr is not None:
        tables.append(Table("logrank", "Log-rank test", ("chi-square", "df", "p"),
                            ((lr.statistic, lr.df, lr.p_value),)))
    tables.append(_cox_table(surv, groups, pct))
    tables.append(Table("at_risk", "Numbers at risk", ("group", *[f"t={t:g}" for t in ticks]),
                        tuple((g, *at_risk[g]) for g in groups)))
    steps = tuple((g, t, n, d, s, lo, hi) for g in groups for t, n, d, s, lo, hi in
                  zip(kms[g].time, kms[g].at_risk, kms[g].events, kms[g].survival, kms[g].ci_low, kms[g].ci_high))
    tables.append(Table("km_steps", "Kaplan-Meier estimates (plotted values)",
                        ("group", "time", "at risk", "events", "survival", "CI low", "CI high"), steps,
                        collapsed=True))
    fig = figures.km_figure(kms, logrank=lr, ticks=ticks, at_risk=at_risk, time_unit=cfg.time_unit)
    caption = f"Kaplan-Meier curves with pointwise {pct}% log-log CI; ticks: censored patients."
    return Section("survival", "Disease-free survival", fig, caption, tuple(tables),
                   () if lr_why is None else (f"Log-rank test not computed: {lr_why}",))


def _cox_table(surv: SurvivalTable, groups: Sequence[str], pct: int) -> Table:
    covs = {f"group={g}": (surv.group == g).astype(float) for g in groups[1:]}
    res, why = _try(cox_fit, surv.time, surv.event, covs)
    rows = () if res is None else tuple((k, t.coef, t.hazard_ratio, t.ci_low, t.ci_high, t.p_value)
                                        for k, t in res.items())
    note = f"Reference group: {groups[0]}. Efron ties." + ("" if why is None else f" Not computed: {why}")
    return Table("cox", "Cox model: hazard ratio of each group vs the reference",
                 ("term", "coef", "hazard ratio", f"HR {pct}% CI low", f"HR {pct}% CI high", "p"), rows, note=note)


# --------------------------------------------------------------------------- entry point


def build_report(predictions: PredictionTable | None = None, survival: SurvivalTable | None = None, *,
                 title: str = "OncoLabel study report", settings: ReportSettings | None = None,
                 inputs: Mapping[str, str | Path] | None = None, **provenance_extra: Any) -> Report:
    """Compute every statistic, figure and table of a study report.

    Parameters
    ----------
    predictions : PredictionTable, optional
        Per-patient scores of one or more models (ROC, DeLong, operating points, calibration,
        decision curves).
    survival : SurvivalTable, optional
        Follow-up per patient and group (Kaplan-Meier, log-rank, Cox).
    title : str
    settings : ReportSettings, optional
    inputs : mapping name -> file path, optional
        Input files; their SHA-256 hashes go into the provenance.
    provenance_extra
        Further provenance fields (task, model checkpoint, ...).

    Returns
    -------
    Report
    """
    if predictions is None and survival is None:
        raise InvalidInputError("a report needs predictions, survival data, or both")
    cfg = settings or ReportSettings()
    sections: list[Section | None] = []
    if predictions is not None:
        roc, _ = _roc_section(predictions, cfg)
        sections += [roc, _delong_tables(predictions, cfg), _operating_section(predictions, cfg),
                     _calibration_section(predictions, cfg), _decision_section(predictions, cfg)]
    if survival is not None:
        sections.append(_survival_section(survival, cfg))
    prov = provenance(settings=cfg.as_dict(), inputs=inputs, report_software=package_versions(_REPORT_PACKAGES),
                      **provenance_extra)
    return Report(title=title, sections=tuple(s for s in sections if s is not None), provenance=prov)
