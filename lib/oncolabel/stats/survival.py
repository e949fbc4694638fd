"""Survival analysis for disease-free survival: Kaplan-Meier, log-rank test, Cox regression.

``time`` is the follow-up time (any unit, >= 0), ``event`` is 1 when the event (recurrence, death)
was observed at ``time`` and 0 when the patient was censored then.

References
----------
Kaplan EL, Meier P. Nonparametric estimation from incomplete observations. J Am Stat Assoc
1958;53:457-481.
Greenwood M. The natural duration of cancer. Rep Public Health Med Subj 1926;33:1-26.
Kalbfleisch JD, Prentice RL. The Statistical Analysis of Failure Time Data, 2nd ed. Wiley 2002
(log-log interval, section 1.3).
Mantel N. Evaluation of survival data and two new rank order statistics arising in its
consideration. Cancer Chemother Rep 1966;50:163-170.
Cox DR. Regression models and life-tables. J R Stat Soc B 1972;34:187-220.
Efron B. The efficiency of Cox's likelihood function for censored data. J Am Stat Assoc
1977;72:557-565.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy import stats as _st

from oncolabel.errors import InvalidInputError
from oncolabel.stats._validation import as_1d, as_binary, as_float, check_alpha, check_same_length


def _time_event(time: Any, event: Any) -> tuple[np.ndarray, np.ndarray]:
    t = as_float(time, "time")
    e = as_binary(event, "event")
    check_same_length(time=t, event=e)
    if (t < 0).any():
        raise InvalidInputError(f"time must be >= 0, found {t[t < 0][:5].tolist()}")
    return t, e


# --------------------------------------------------------------------------- Kaplan-Meier


@dataclass(frozen=True)
class KaplanMeierResult:
    """Kaplan-Meier estimate, a right-continuous step function.

    Attributes
    ----------
    time : ndarray
        Distinct observed times (events and censorings), ascending; ``survival[i]`` holds on
        ``[time[i], time[i+1])`` and is 1 before ``time[0]``.
    survival, ci_low, ci_high : ndarray
        ``S(t)`` and its pointwise log-log ``1 - alpha`` interval.
    at_risk, events, censored : ndarray of int
        Patients at risk just before, events at, and censorings at each time.
    median : float or None
        Smallest time with ``S(t) <= 0.5``; ``None`` when the curve never reaches 0.5.
    median_ci : (float or None, float or None)
        Times where the interval's limits reach 0.5 (``None``: not reached).
    alpha : float
    """

    time: np.ndarray
    survival: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    censored: np.ndarray
    median: float | None
    median_ci: tuple[float | None, float | None]
    alpha: float

    def survival_at(self, t: Any) -> np.ndarray:
        """``S(t)`` at the given times (1 before the first observed time)."""
        idx = np.searchsorted(self.time, np.atleast_1d(np.asarray(t, dtype=float)), side="right") - 1
        return np.where(idx >= 0, self.survival[np.maximum(idx, 0)], 1.0)


def _first_at_or_below_half(time: np.ndarray, curve: np.ndarray) -> float | None:
    hit = np.flatnonzero(curve <= 0.5)
    return float(time[hit[0]]) if hit.size else None


def kaplan_meier(time: Any, event: Any, *, alpha: float = 0.05) -> KaplanMeierResult:
    """Kaplan-Meier product-limit estimate with Greenwood log-log confidence interval.

    ``S(t) = prod_{t_j <= t} (1 - d_j / n_j)`` (Kaplan & Meier 1958). The interval is
    ``S^exp(-/+ z se)`` with ``se^2 = sum d_j / (n_j (n_j - d_j)) / (log S)^2`` (Greenwood 1926 on
    the log(-log) scale; Kalbfleisch & Prentice 2002), as lifelines' default and R's
    ``survfit(conf.type="log-log")``. The median is the first time with ``S(t) <= 0.5`` (lifelines'
    convention; R's survfit takes the midpoint when S stays exactly at 0.5 over an interval).
    """
    a = check_alpha(alpha)
    t, e = _time_event(time, event)
    times, inverse = np.unique(t, return_inverse=True)
    events = np.bincount(inverse, weights=e, minlength=times.size).astype(int)
    total = np.bincount(inverse, minlength=times.size)
    at_risk = t.size - np.r_[0, np.cumsum(total)[:-1]]
    surv = np.cumprod(1.0 - events / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        green = np.cumsum(np.where(at_risk > events, events / (at_risk * (at_risk - events)), np.inf))
        se = np.sqrt(green) / np.abs(np.log(surv))
        z = float(_st.norm.ppf(1 - a / 2))
        lo = surv ** np.exp(z * se)
        hi = surv ** np.exp(-z * se)
    defined = (surv > 0) & (surv < 1)
    lo = np.where(defined, lo, surv)
    hi = np.where(defined, hi, surv)
    return KaplanMeierResult(
        time=times, survival=surv, ci_low=lo, ci_high=hi, at_risk=at_risk.astype(int), events=events,
        censored=(total - events).astype(int), median=_first_at_or_below_half(times, surv),
        median_ci=(_first_at_or_below_half(times, lo), _first_at_or_below_half(times, hi)), alpha=a)


def number_at_risk(time: Any, at: Any) -> np.ndarray:
    """Patients still at risk (``time >= t``) at each time of ``at``, for tables under KM plots."""
    t = np.sort(as_float(time, "time"))
    points = as_float(np.atleast_1d(at), "at")
    return (t.size - np.searchsorted(t, points, side="left")).astype(int)


# --------------------------------------------------------------------------- log-rank


@dataclass(frozen=True)
class LogrankResult:
    """K-group log-rank test.

    Attributes
    ----------
    statistic : float
        Chi-square statistic.
    df : int
        Number of groups - 1.
    p_value : float
    groups : tuple
        Group labels, sorted.
    observed, expected : tuple of float
        Observed and expected events per group (same order as ``groups``).
    """

    statistic: float
    df: int
    p_value: float
    groups: tuple
    observed: tuple[float, ...]
    expected: tuple[float, ...]


def logrank_test(time: Any, event: Any, group: Any) -> LogrankResult:
    """Log-rank (Mantel-Cox) test that two or more survival curves are equal.

    At each distinct event time ``t_j`` with ``n_j`` at risk and ``d_j`` events (``n_gj``, ``d_gj``
    in group g)::

        O_g - E_g = sum_j d_gj - d_j n_gj / n_j
        V_gh      = sum_j d_j (n_j - d_j) / (n_j - 1) * n_gj / n_j * (delta_gh - n_hj / n_j)
        chi2      = (O - E)' V^- (O - E)   on  K - 1  degrees of freedom

    using the first ``K - 1`` groups (Mantel 1966); the same as R's ``survdiff`` and lifelines'
    ``multivariate_logrank_test``.
    """
    t, e = _time_event(time, event)
    g = as_1d(group, "group")
    check_same_length(time=t, group=g)
    if g.dtype.kind == "f" and np.isnan(g).any():
        raise InvalidInputError("group has missing (NaN) labels")
    labels, gi = np.unique(g.astype(str) if g.dtype.kind == "O" else g, return_inverse=True)
    k = labels.size
    if k < 2:
        raise InvalidInputError(f"the log-rank test needs at least 2 groups, got only {labels.tolist()}")
    if not e.any():
        raise InvalidInputError("the log-rank test needs at least one event; every patient is censored")
    ev_times = np.unique(t[e == 1])
    # n_gj: at risk in group g at each event time; d_gj: events of group g at it
    n_g = np.empty((k, ev_times.size))
    d_g = np.empty((k, ev_times.size))
    for j in range(k):
        tg, eg = t[gi == j], e[gi == j]
        n_g[j] = tg.size - np.searchsorted(np.sort(tg), ev_times, side="left")
        d_g[j] = np.bincount(np.searchsorted(ev_times, tg[eg == 1]), minlength=ev_times.size)
    n, d = n_g.sum(axis=0), d_g.sum(axis=0)
    observed, expected = d_g.sum(axis=1), (d * n_g / n).sum(axis=1)
    w = np.where(n > 1, d * (n - d) / np.maximum(n - 1, 1), 0.0)
    frac = n_g / n
    cov = -(w * frac) @ frac.T
    cov[np.diag_indices(k)] += (w * frac).sum(axis=1)
    diff = (observed - expected)[:-1]
    try:
        stat = float(diff @ np.linalg.solve(cov[:-1, :-1], diff))
    except np.linalg.LinAlgError as exc:
        raise InvalidInputError("the log-rank variance matrix is singular (a group with no one at risk "
                                "at any event time?)") from exc
    return LogrankResult(statistic=stat, df=k - 1, p_value=float(_st.chi2.sf(stat, k - 1)),
                         groups=tuple(v.item() if hasattr(v, "item") else v for v in labels),
                         observed=tuple(observed.tolist()), expected=tuple(expected.tolist()))


# --------------------------------------------------------------------------- Cox


@dataclass(frozen=True)
class CoxTerm:
    """One covariate of a Cox model.

    ``hazard_ratio = exp(coef)``; ``ci_low``/``ci_high`` bound the hazard ratio (Wald, on the log
    scale); ``p_value`` is the two-sided Wald test of ``coef = 0``.
    """

    coef: float
    hazard_ratio: float
    se: float
    p_value: float
    ci_low: float
    ci_high: float


def cox_fit(time: Any, event: Any, covariates: Any, *, alpha: float = 0.05) -> dict[str, CoxTerm]:
    """Cox proportional-hazards regression with Efron's handling of tied event times.

    Fitted with lifelines' ``CoxPHFitter`` (Newton-Raphson on Efron's partial likelihood, Cox 1972,
    Efron 1977); R's ``coxph`` default uses the same ties method and gives the same estimates.

    Parameters
    ----------
    time, event : array-like
    covariates : mapping name -> array-like, or pandas DataFrame
        Numeric covariates, one value per patient (encode categories as 0/1 columns).
    alpha : float
        For the hazard-ratio intervals.

    Returns
    -------
    dict of str -> CoxTerm
        In the order of ``covariates``.
    """
    import pandas as pd  # local: only the survival regression needs them
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    a = check_alpha(alpha)
    t, e = _time_event(time, event)
    if isinstance(covariates, pd.DataFrame):
        covariates = {str(c): covariates[c].to_numpy() for c in covariates.columns}
    if not isinstance(covariates, Mapping) or not covariates:
        raise InvalidInputError("covariates must be a non-empty mapping name -> values, or a DataFrame")
    data = {}
    for name, values in covariates.items():
        col = as_float(values, f"covariate {name!r}")
        check_same_length(time=t, **{f"covariate {name!r}": col})
        if np.ptp(col) == 0:
            raise InvalidInputError(f"covariate {name!r} is constant; its hazard ratio cannot be estimated")
        data[str(name)] = col
    if not e.any():
        raise InvalidInputError("a Cox model needs at least one event; every patient is censored")
    df = pd.DataFrame(data)
    dur, evt = "__oncolabel_time__", "__oncolabel_event__"
    df[dur], df[evt] = t, e
    try:
        fitted = CoxPHFitter(alpha=a).fit(df, duration_col=dur, event_col=evt)
    except ConvergenceError as exc:
        raise InvalidInputError(f"the Cox model did not converge: {exc}") from exc
    s = fitted.summary
    z = float(_st.norm.ppf(1 - a / 2))
    out = {}
    for name in data:
        coef, se = float(s.loc[name, "coef"]), float(s.loc[name, "se(coef)"])
        out[name] = CoxTerm(coef=coef, hazard_ratio=float(np.exp(coef)), se=se, p_value=float(s.loc[name, "p"]),
                            ci_low=float(np.exp(coef - z * se)), ci_high=float(np.exp(coef + z * se)))
    return out
