"""Matplotlib figures of study results, each stamped "research use only".

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas attached inside each call: no
pyplot, no global backend switch at import, safe in servers and threads. Every function takes
results of :mod:`oncolabel.stats` and returns a Figure; :mod:`oncolabel.report.html` turns them
into PNG, PDF or SVG.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.stats import (
    CalibrationResult,
    KaplanMeierResult,
    LogrankResult,
    NetBenefitResult,
    RocAucResult,
    RocBand,
    RocCurve,
)

_STAMP = f"OncoLabel - {RESEARCH_USE_ONLY}"


def new_figure(width: float = 6.0, height: float = 5.0) -> Any:
    """An Agg-backed Figure with the research-use-only stamp in its lower margin."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.003, _STAMP, ha="center", va="bottom", fontsize=7, color="0.35")
    fig.get_layout_engine().set(h_pad=0.12)  # room for the stamp
    return fig


def nice_ticks(stop: float, n: int = 6) -> np.ndarray:
    """Round tick positions from 0 to about ``stop`` (used by plots and their numbers-at-risk tables)."""
    from matplotlib.ticker import MaxNLocator

    ticks = MaxNLocator(nbins=n, min_n_ticks=3).tick_values(0.0, float(stop) if stop > 0 else 1.0)
    return ticks[(ticks >= 0) & (ticks <= stop + 1e-9)]


def roc_figure(curves: Mapping[str, tuple[RocCurve, RocBand | None, RocAucResult]], *,
               title: str = "ROC curves") -> Any:
    """ROC curve per model with its pointwise bootstrap band; AUC (CI) in the legend."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", color="0.6", lw=1, label="chance")
    for i, (name, (curve, band, auc)) in enumerate(curves.items()):
        color = f"C{i % 10}"
        pct = int(round(100 * (1 - auc.alpha)))
        ax.plot(curve.fpr, curve.tpr, color=color, lw=1.8,
                label=f"{name}: AUC {auc.auc:.3f} ({pct}% CI {auc.ci_low:.3f}-{auc.ci_high:.3f})")
        if band is not None:
            ax.fill_between(band.fpr, band.tpr_low, band.tpr_high, color=color, alpha=0.15, lw=0)
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="1 - specificity (false-positive rate)",
           ylabel="Sensitivity (true-positive rate)", title=title, aspect="equal")
    ax.legend(loc="lower right", fontsize=7)
    return fig


def calibration_figure(results: Mapping[str, CalibrationResult], *, title: str = "Calibration") -> Any:
    """Reliability curve per model (observed fraction with Wilson CI vs mean predicted risk)."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", color="0.6", lw=1, label="perfect calibration")
    for i, (name, res) in enumerate(results.items()):
        c = res.curve
        err = np.vstack([c.observed - c.ci_low, c.ci_high - c.observed])
        ax.errorbar(c.mean_predicted, c.observed, yerr=err, marker="o", ms=4, lw=1.4, capsize=2,
                    color=f"C{i % 10}",
                    label=f"{name}: slope {res.slope:.2f}, intercept {res.intercept:.2f}, Brier {res.brier:.3f}")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="Mean predicted risk",
           ylabel="Observed fraction positive", title=title, aspect="equal")
    ax.legend(loc="lower right", fontsize=7)
    return fig


def decision_figure(curves: Mapping[str, Sequence[NetBenefitResult]], *, title: str = "Decision curves") -> Any:
    """Net benefit of each model, of treating all and of treating none, against the threshold."""
    fig = new_figure(6.5, 4.5)
    ax = fig.add_subplot()
    first = next(iter(curves.values()))
    pts = [r.threshold for r in first]
    all_nb = [r.treat_all for r in first]
    ax.plot(pts, all_nb, color="0.45", lw=1.2, label="treat all")
    ax.axhline(0.0, color="0.15", lw=1.2, label="treat none")
    top = max(max(all_nb), 0.0)
    for i, (name, rows) in enumerate(curves.items()):
        nb = [r.model for r in rows]
        top = max(top, max(nb))
        ax.plot(pts, nb, color=f"C{i % 10}", lw=1.8, label=name)
    ax.set(xlim=(min(pts), max(pts)), ylim=(-0.05 * max(top, 0.1), 1.1 * max(top, 0.01)),
           xlabel="Threshold probability", ylabel="Net benefit", title=title)
    ax.legend(loc="upper right", fontsize=7)
    return fig


def km_figure(curves: Mapping[str, KaplanMeierResult], *, logrank: LogrankResult | None, ticks: Sequence[float],
              at_risk: Mapping[str, Sequence[int]], time_unit: str = "", title: str = "Kaplan-Meier") -> Any:
    """Kaplan-Meier curves with CI bands, censoring marks, log-rank p and a numbers-at-risk table."""
    fig = new_figure(6.5, 5.4)
    grid = fig.add_gridspec(2, 1, height_ratios=[4, 0.35 + 0.22 * len(curves)])
    ax = fig.add_subplot(grid[0])
    for i, (name, km) in enumerate(curves.items()):
        color = f"C{i % 10}"
        t = np.r_[0.0, km.time]
        ax.step(t, np.r_[1.0, km.survival], where="post", color=color, lw=1.8, label=name)
        ax.fill_between(t, np.r_[1.0, km.ci_low], np.r_[1.0, km.ci_high], step="post", color=color,
                        alpha=0.12, lw=0)
        cens = km.censored > 0
        ax.plot(km.time[cens], km.survival[cens], "|", color=color, ms=7)
    if logrank is not None:
        ax.text(0.98, 0.96, f"log-rank p {_p(logrank.p_value)}", transform=ax.transAxes, ha="right", va="top",
                fontsize=9)
    unit = f" ({time_unit})" if time_unit else ""
    ax.set(ylim=(-0.02, 1.02), xlim=(0, float(ticks[-1]) * 1.02 if len(ticks) else None),
           ylabel="Survival probability", title=title, xticks=list(ticks))
    ax.legend(loc="lower left", fontsize=8)
    tab = fig.add_subplot(grid[1], sharex=ax)
    tab.set_axis_off()
    tab.text(-0.03, 1.0, "Number at risk", transform=tab.transAxes, fontsize=8, ha="right", va="top",
             weight="bold")
    for row, (name, counts) in enumerate(at_risk.items()):
        y = 1.0 - (row + 1.3) / (len(at_risk) + 1)
        tab.text(-0.03, y, name, transform=tab.get_yaxis_transform(), ha="right", fontsize=8, color=f"C{row % 10}")
        for x, n in zip(ticks, counts):
            tab.text(x, y, str(n), transform=tab.get_xaxis_transform(), ha="center", fontsize=8)
    tab.set_ylim(0, 1)
    ax.set_xlabel(f"Time{unit}")
    return fig


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"
