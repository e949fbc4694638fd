"""Binary diagnostic accuracy: proportions with CIs, sensitivity/specificity/PPV/NPV, thresholds.

References
----------
Wilson EB. Probable inference, the law of succession, and statistical inference. J Am Stat Assoc
1927;22:209-212.
Newcombe RG. Two-sided confidence intervals for the single proportion: comparison of seven methods.
Stat Med 1998;17:857-872.
Clopper CJ, Pearson ES. The use of confidence or fiducial limits illustrated in the case of the
binomial. Biometrika 1934;26:404-413.
Youden WJ. Index for rating diagnostic tests. Cancer 1950;3:32-35.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from oncolabel.errors import InvalidInputError
from oncolabel.stats._validation import (
    as_binary,
    as_float,
    binary_and_scores,
    check_alpha,
    check_both_classes,
    check_same_length,
)
from oncolabel.stats.roc import _curve


def _counts(successes: Any, n: Any) -> tuple[int, int]:
    try:
        x, m = int(successes), int(n)
        ok = x == successes and m == n and 0 <= x <= m and m >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InvalidInputError(
            f"a proportion needs integers 0 <= successes <= n and n >= 1, got successes={successes!r}, n={n!r}")
    return x, m


def wilson_ci(successes: int, n: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    With ``p = x/n`` and ``z = z_{1-alpha/2}``::

        (p + z^2/(2n) -/+ z sqrt(p(1-p)/n + z^2/(4n^2))) / (1 + z^2/n)

    (Wilson 1927; method 3 of Newcombe 1998). Unlike the Wald interval it stays inside [0, 1] and
    is not degenerate at 0 or n successes.

    Returns
    -------
    (low, high) : tuple of float
    """
    x, m = _counts(successes, n)
    z = float(_st.norm.ppf(1.0 - check_alpha(alpha) / 2.0))
    p = x / m
    denom = 1.0 + z * z / m
    centre = (p + z * z / (2 * m)) / denom
    half = z * math.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / denom
    low = 0.0 if x == 0 else max(0.0, centre - half)
    high = 1.0 if x == m else min(1.0, centre + half)
    return low, high


def clopper_pearson_ci(successes: int, n: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson 1934) interval: Beta(a/2; x, n-x+1) to Beta(1-a/2; x+1, n-x) quantiles."""
    x, m = _counts(successes, n)
    a = check_alpha(alpha)
    low = 0.0 if x == 0 else float(_st.beta.ppf(a / 2, x, m - x + 1))
    high = 1.0 if x == m else float(_st.beta.ppf(1 - a / 2, x + 1, m - x))
    return low, high


@dataclass(frozen=True)
class ProportionCI:
    """A proportion ``successes / n`` with its confidence interval."""

    estimate: float
    ci_low: float
    ci_high: float
    successes: int
    n: int
    method: str
    alpha: float


def proportion_ci(successes: int, n: int, *, alpha: float = 0.05, method: str = "wilson") -> ProportionCI:
    """Proportion with a ``1 - alpha`` interval.

    Parameters
    ----------
    method : {"wilson", "clopper-pearson"}
        See :func:`wilson_ci` and :func:`clopper_pearson_ci`.
    """
    funcs = {"wilson": wilson_ci, "clopper-pearson": clopper_pearson_ci}
    if method not in funcs:
        raise InvalidInputError(f"method must be one of {sorted(funcs)}, got {method!r}")
    low, high = funcs[method](successes, n, alpha=alpha)
    x, m = _counts(successes, n)
    return ProportionCI(estimate=x / m, ci_low=low, ci_high=high, successes=x, n=m, method=method,
                        alpha=float(alpha))


@dataclass(frozen=True)
class DiagnosticResult:
    """2x2 table and the four accuracy measures with CIs.

    ``ppv`` (``npv``) is ``None`` when no patient was called positive (negative): the quantity is
    undefined, and no NaN is returned.
    """

    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: ProportionCI
    specificity: ProportionCI
    ppv: ProportionCI | None
    npv: ProportionCI | None
    threshold: float | None = None

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


def _calls(y_pred: Any, threshold: float | None, n: int) -> np.ndarray:
    """0/1 calls: ``y_pred`` itself, or ``y_pred >= threshold`` when a threshold is given."""
    if threshold is None:
        pred = as_binary(y_pred, "y_pred")
    else:
        t = float(threshold)
        if not math.isfinite(t):
            raise InvalidInputError(f"threshold must be finite, got {threshold!r}")
        pred = (as_float(y_pred, "y_pred") >= t).astype(int)
    check_same_length(y_true=np.empty(n), y_pred=pred)
    return pred


def diagnostic_metrics(y_true: Any, y_pred: Any, *, threshold: float | None = None, alpha: float = 0.05,
                       method: str = "wilson") -> DiagnosticResult:
    """Sensitivity, specificity, PPV and NPV with (by default Wilson) confidence intervals.

    ``sensitivity = TP/(TP+FN)``, ``specificity = TN/(TN+FP)``, ``PPV = TP/(TP+FP)``,
    ``NPV = TN/(TN+FN)``, each a binomial proportion with its interval from :func:`proportion_ci`.

    Parameters
    ----------
    y_true : array-like of 0/1
    y_pred : array-like
        0/1 calls, or scores when ``threshold`` is given (positive when ``score >= threshold``).
    threshold : float, optional
    alpha, method
        Passed to :func:`proportion_ci`.

    Notes
    -----
    PPV and NPV depend on the prevalence of the sample; they transfer to another setting only if its
    prevalence is the same.
    """
    y = as_binary(y_true, "y_true")
    pred = _calls(y_pred, threshold, y.size)
    check_both_classes(y)
    tp = int(np.sum((y == 1) & (pred == 1)))
    fn = int(np.sum((y == 1) & (pred == 0)))
    tn = int(np.sum((y == 0) & (pred == 0)))
    fp = int(np.sum((y == 0) & (pred == 1)))

    def prop(x: int, m: int) -> ProportionCI | None:
        return proportion_ci(x, m, alpha=alpha, method=method) if m else None

    return DiagnosticResult(tp=tp, fp=fp, tn=tn, fn=fn, sensitivity=prop(tp, tp + fn),
                            specificity=prop(tn, tn + fp), ppv=prop(tp, tp + fp), npv=prop(tn, tn + fn),
                            threshold=None if threshold is None else float(threshold))


@dataclass(frozen=True)
class ThresholdResult:
    """An operating point chosen on the data (positive when ``score >= threshold``)."""

    threshold: float
    sensitivity: float
    specificity: float
    criterion: str

    @property
    def youden_j(self) -> float:
        """``sensitivity + specificity - 1``."""
        return self.sensitivity + self.specificity - 1.0


def _operating_points(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, sensitivity, specificity) at every distinct observed score."""
    y, s = binary_and_scores(y_true, y_score)
    fpr, tpr, thr = _curve(y, s)
    return thr[1:], tpr[1:], 1.0 - fpr[1:]  # drop the +inf point (nobody positive)


def youden_threshold(y_true: Any, y_score: Any) -> ThresholdResult:
    """Threshold maximising Youden's J = sensitivity + specificity - 1 (Youden 1950).

    Candidates are the observed scores; ties in J go to the highest threshold. A threshold chosen on
    the data it is evaluated on is optimistic: report its performance on held-out data.
    """
    thr, sens, spec = _operating_points(y_true, y_score)
    i = int(np.argmax(sens + spec))
    return ThresholdResult(float(thr[i]), float(sens[i]), float(spec[i]), "youden")


def _first_at_least(values: np.ndarray, target: float, name: str) -> int:
    if not 0.0 <= float(target) <= 1.0:
        raise InvalidInputError(f"target {name} must be in [0, 1], got {target!r}")
    hits = np.flatnonzero(values >= float(target) - 1e-12)
    if not hits.size:
        raise InvalidInputError(
            f"no observed threshold reaches {name} {target:g} (best is {values.max():.4f})")
    return int(hits[0])


def threshold_at_sensitivity(y_true: Any, y_score: Any, sensitivity: float) -> ThresholdResult:
    """Highest threshold whose sensitivity is at least ``sensitivity`` (so the best specificity).

    Scanning thresholds from high to low, sensitivity only grows and specificity only falls; the
    first threshold reaching the target is the most specific one that meets it.
    """
    thr, sens, spec = _operating_points(y_true, y_score)
    i = _first_at_least(sens, sensitivity, "sensitivity")
    return ThresholdResult(float(thr[i]), float(sens[i]), float(spec[i]), f"sensitivity>={sensitivity:g}")


def threshold_at_specificity(y_true: Any, y_score: Any, specificity: float) -> ThresholdResult:
    """Lowest threshold whose specificity is at least ``specificity`` (so the best sensitivity)."""
    thr, sens, spec = _operating_points(y_true, y_score)
    i = len(spec) - 1 - _first_at_least(spec[::-1], specificity, "specificity")
    return ThresholdResult(float(thr[i]), float(sens[i]), float(spec[i]), f"specificity>={specificity:g}")
