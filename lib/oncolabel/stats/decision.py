"""Decision-curve analysis: net benefit of a risk model across threshold probabilities.

References
----------
Vickers AJ, Elkin EB. Decision curve analysis: a novel method for evaluating prediction models.
Med Decis Making 2006;26:565-574.
Vickers AJ, van Calster B, Steyerberg EW. A simple, step-by-step guide to interpreting decision curve
analysis. Diagn Progn Res 2019;3:18.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from oncolabel.errors import InvalidInputError
from oncolabel.stats._validation import as_float, binary_and_scores, check_probabilities


@dataclass(frozen=True)
class NetBenefitResult:
    """Net benefit at one threshold probability ``pt``.

    Attributes
    ----------
    threshold : float
    model : float
        ``TP/n - FP/n * pt/(1-pt)`` with a patient treated when ``score >= pt``.
    treat_all : float
        ``prevalence - (1 - prevalence) * pt/(1-pt)``.
    treat_none : float
        Always 0.
    tp, fp, n : int
    """

    threshold: float
    model: float
    treat_all: float
    treat_none: float
    tp: int
    fp: int
    n: int


def net_benefit(y_true: Any, y_score: Any, thresholds: Any) -> list[NetBenefitResult]:
    """Net benefit of the model, of treating all and of treating none (Vickers & Elkin 2006).

    At threshold probability ``pt`` a patient is called positive when ``score >= pt`` and::

        NB_model     = TP/n - FP/n * pt / (1 - pt)
        NB_treat_all = pi - (1 - pi) * pt / (1 - pt),   pi = prevalence
        NB_treat_none = 0

    ``pt/(1-pt)`` is the exchange rate between false and true positives implied by treating at risk
    ``pt``. The scores must be predicted risks (probabilities in [0, 1]), since ``pt`` is one.

    Parameters
    ----------
    y_true : array-like of 0/1
    y_score : array-like of float in [0, 1]
    thresholds : float or array-like of float in (0, 1)

    Returns
    -------
    list of NetBenefitResult
        One per threshold, in the given order.
    """
    y, s = binary_and_scores(y_true, y_score)
    check_probabilities(s, "y_score")
    pts = as_float(np.atleast_1d(np.asarray(thresholds, dtype=object)), "thresholds")
    bad = pts[(pts <= 0) | (pts >= 1)]
    if bad.size:
        raise InvalidInputError(f"thresholds must lie strictly between 0 and 1, got {bad[:5].tolist()}")
    n = y.size
    prevalence = y.mean()
    out = []
    for pt in pts:
        odds = pt / (1.0 - pt)
        pred = s >= pt
        tp = int(np.sum(pred & (y == 1)))
        fp = int(np.sum(pred & (y == 0)))
        out.append(NetBenefitResult(threshold=float(pt), model=tp / n - fp / n * odds,
                                    treat_all=float(prevalence - (1 - prevalence) * odds), treat_none=0.0,
                                    tp=tp, fp=fp, n=n))
    return out
