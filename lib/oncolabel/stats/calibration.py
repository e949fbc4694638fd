"""Calibration of predicted risks: Brier score, calibration intercept and slope, reliability curve.

References
----------
Brier GW. Verification of forecasts expressed in terms of probability. Mon Weather Rev 1950;78:1-3.
Cox DR. Two further applications of a model for binary regression. Biometrika 1958;45:562-565.
Van Calster B, Nieboer D, Vergouwe Y, De Cock B, Pencina MJ, Steyerberg EW. A calibration hierarchy
for risk models was defined: from utopia to empirical data. J Clin Epidemiol 2016;74:167-176.
Steyerberg EW. Clinical Prediction Models, 2nd ed. Springer 2019, ch. 15.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special as _sp
from scipy import stats as _st

from oncolabel.errors import InvalidInputError
from oncolabel.stats._validation import binary_and_scores, check_alpha, check_positive_int, check_probabilities
from oncolabel.stats.diagnostic import wilson_ci

_EPS = 1e-12  # predicted risks are clipped to [eps, 1 - eps] before the logit


def _labels_and_probs(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated labels (both classes present, as everywhere in the package) and risks in [0, 1]."""
    y, p = binary_and_scores(y_true, y_prob, score_name="y_prob")
    return y, check_probabilities(p, "y_prob")


def brier_score(y_true: Any, y_prob: Any) -> float:
    """Brier score, the mean squared difference ``mean((p_i - y_i)^2)`` (Brier 1950); lower is better."""
    y, p = _labels_and_probs(y_true, y_prob)
    return float(np.mean((p - y) ** 2))


def _logistic(x: np.ndarray, y: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood logistic regression by Newton-Raphson with step halving.

    Returns the coefficients and their covariance (inverse observed information).
    """
    beta = np.zeros(x.shape[1])

    def loglik(b: np.ndarray) -> float:
        eta = x @ b + offset
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    def information(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = _sp.expit(x @ b + offset)
        return x.T @ (x * (mu * (1 - mu))[:, None]), x.T @ (y - mu)

    ll = loglik(beta)
    for _ in range(100):
        info, score = information(beta)
        try:
            step = np.linalg.solve(info, score)
        except np.linalg.LinAlgError:
            break
        for _half in range(30):
            new_ll = loglik(beta + step)
            if new_ll >= ll - 1e-12:
                break
            step = step / 2.0
        beta, ll = beta + step, new_ll
        if np.max(np.abs(step)) < 1e-10:
            if np.max(np.abs(beta)) > 50:  # diverging towards separation, not a real optimum
                break
            return beta, np.linalg.inv(information(beta)[0])
    raise InvalidInputError(
        "the calibration logistic fit did not converge: the outcomes are (nearly) perfectly separated "
        "by the predicted risks, so no finite calibration intercept/slope exists")


@dataclass(frozen=True)
class ReliabilityCurve:
    """Observed event fraction against mean predicted risk per bin (empty bins dropped).

    Attributes
    ----------
    mean_predicted, observed : ndarray
        Mean predicted risk and observed fraction of positives in each bin.
    ci_low, ci_high : ndarray
        Wilson interval of the observed fraction.
    counts : ndarray of int
        Patients per bin.
    bin_edges : ndarray
        Edges of the non-empty bins, shape (k, 2).
    """

    mean_predicted: np.ndarray
    observed: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    counts: np.ndarray
    bin_edges: np.ndarray


def reliability_curve(y_true: Any, y_prob: Any, *, n_bins: int = 10, strategy: str = "uniform",
                      alpha: float = 0.05) -> ReliabilityCurve:
    """Binned reliability (calibration) curve.

    Parameters
    ----------
    n_bins : int
    strategy : {"uniform", "quantile"}
        Equal-width bins on [0, 1], or bins holding about equal numbers of patients (deciles of risk
        for ``n_bins=10``, as in the Hosmer-Lemeshow grouping).
    alpha : float
        For the Wilson interval of each bin's observed fraction.
    """
    y, p = _labels_and_probs(y_true, y_prob)
    k = check_positive_int(n_bins, "n_bins")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, k + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, k + 1)))
    else:
        raise InvalidInputError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, edges.size - 2)
    rows = []
    for b in np.unique(idx):
        sel = idx == b
        n, x = int(sel.sum()), int(y[sel].sum())
        rows.append((p[sel].mean(), x / n, *wilson_ci(x, n, alpha=alpha), n, edges[b], edges[b + 1]))
    a = np.array(rows, dtype=float)
    return ReliabilityCurve(mean_predicted=a[:, 0], observed=a[:, 1], ci_low=a[:, 2], ci_high=a[:, 3],
                            counts=a[:, 4].astype(int), bin_edges=a[:, 5:7])


@dataclass(frozen=True)
class CalibrationResult:
    """Calibration summary of predicted risks.

    Attributes
    ----------
    brier : float
        Brier score.
    intercept, intercept_ci : float, (float, float)
        Calibration-in-the-large ``a`` of ``logit P(y=1) = a + logit(p)`` (slope fixed at 1, i.e.
        ``logit(p)`` as an offset); 0 when the mean risk is right, > 0 when risks are too low.
    slope, slope_ci : float, (float, float)
        ``b`` of ``logit P(y=1) = a' + b logit(p)``; 1 is ideal, < 1 means too extreme risks
        (overfitting).
    observed_expected : float
        ``sum(y) / sum(p)``.
    curve : ReliabilityCurve
    n : int
    alpha : float
    """

    brier: float
    intercept: float
    intercept_ci: tuple[float, float]
    slope: float
    slope_ci: tuple[float, float]
    observed_expected: float
    curve: ReliabilityCurve
    n: int
    alpha: float


def calibration(y_true: Any, y_prob: Any, *, n_bins: int = 10, strategy: str = "uniform",
                alpha: float = 0.05) -> CalibrationResult:
    """Brier score, calibration intercept and slope (Cox 1958), and a reliability curve.

    The slope is the coefficient of ``logit(p)`` in a logistic regression of the outcome on it; the
    intercept (calibration-in-the-large) is the intercept of a logistic regression with ``logit(p)``
    as an offset (Van Calster et al. 2016; Steyerberg 2019). Both are maximum-likelihood fits with
    Wald intervals. Risks are clipped to [1e-12, 1 - 1e-12] before the logit. Matches R's
    ``glm(y ~ qlogis(p), binomial)`` and ``glm(y ~ offset(qlogis(p)), binomial)``.

    Raises
    ------
    InvalidInputError
        Risks outside [0, 1], a single outcome class, or outcomes perfectly separated by the risks.
    """
    a = check_alpha(alpha)
    y, p = _labels_and_probs(y_true, y_prob)
    lp = _sp.logit(np.clip(p, _EPS, 1 - _EPS))
    z = float(_st.norm.ppf(1 - a / 2))
    ones = np.ones((y.size, 1))
    (icpt,), icov = _logistic(ones, y.astype(float), lp)
    coef, cov = _logistic(np.column_stack([ones, lp]), y.astype(float), np.zeros(y.size))
    ise, sse = float(np.sqrt(icov[0, 0])), float(np.sqrt(cov[1, 1]))
    return CalibrationResult(
        brier=float(np.mean((p - y) ** 2)), intercept=float(icpt), intercept_ci=(icpt - z * ise, icpt + z * ise),
        slope=float(coef[1]), slope_ci=(coef[1] - z * sse, coef[1] + z * sse),
        observed_expected=float(y.sum() / p.sum()) if p.sum() > 0 else float("inf"),
        curve=reliability_curve(y, p, n_bins=n_bins, strategy=strategy, alpha=a), n=int(y.size), alpha=a)
