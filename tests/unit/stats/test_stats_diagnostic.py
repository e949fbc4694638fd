"""Known-answer tests of proportions, diagnostic accuracy and threshold selection."""

from __future__ import annotations

import numpy as np
import pytest

from oncolabel.errors import InvalidInputError
from oncolabel.stats import (
    clopper_pearson_ci,
    diagnostic_metrics,
    proportion_ci,
    threshold_at_sensitivity,
    threshold_at_specificity,
    wilson_ci,
    youden_threshold,
)


# Newcombe, Stat Med 1998;17:857-872, Table I, method 3 (Wilson score interval), 4 decimals.
@pytest.mark.parametrize("x, n, low, high", [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_newcombe_examples(x, n, low, high):
    assert wilson_ci(x, n) == pytest.approx((low, high), abs=5e-5)


# R 4.x binom.test(x, n)$conf.int (Clopper-Pearson)
@pytest.mark.parametrize("x, n, low, high", [
    (7, 20, 0.153909204784541, 0.592188534532828),
    (0, 15, 0.0, 0.218019360910534),
])
def test_clopper_pearson_matches_r(x, n, low, high):
    assert clopper_pearson_ci(x, n) == pytest.approx((low, high), rel=1e-9)


def test_proportion_ci_dataclass():
    p = proportion_ci(81, 263)
    assert p.estimate == pytest.approx(81 / 263)
    assert (p.ci_low, p.ci_high) == wilson_ci(81, 263)
    assert p.ci_low < p.estimate < p.ci_high
    assert proportion_ci(7, 20, method="clopper-pearson").ci_low == pytest.approx(0.153909204784541)
    wide = proportion_ci(81, 263, alpha=0.01)
    assert wide.ci_low < p.ci_low and wide.ci_high > p.ci_high


@pytest.mark.parametrize("x, n", [(-1, 10), (11, 10), (1, 0), (1.5, 10), ("a", 3)])
def test_bad_proportions(x, n):
    with pytest.raises(InvalidInputError):
        wilson_ci(x, n)
    with pytest.raises(ValueError):
        proportion_ci(x, n)


def test_proportion_bad_method():
    with pytest.raises(InvalidInputError, match="method"):
        proportion_ci(1, 2, method="wald")


def test_diagnostic_metrics_2x2():
    # 2x2 table: TP 40, FN 10, FP 5, TN 45
    y = [1] * 50 + [0] * 50
    pred = [1] * 40 + [0] * 10 + [1] * 5 + [0] * 45
    d = diagnostic_metrics(y, pred)
    assert (d.tp, d.fn, d.fp, d.tn, d.n) == (40, 10, 5, 45, 100)
    assert d.sensitivity.estimate == 0.8 and d.specificity.estimate == 0.9
    assert d.ppv.estimate == pytest.approx(40 / 45) and d.npv.estimate == pytest.approx(45 / 55)
    assert (d.sensitivity.ci_low, d.sensitivity.ci_high) == wilson_ci(40, 50)
    # the same calls from scores and a threshold
    scores = np.where(np.array(pred) == 1, 0.7, 0.2)
    assert diagnostic_metrics(y, scores, threshold=0.7).sensitivity == d.sensitivity


def test_undefined_ppv_is_none_not_nan():
    d = diagnostic_metrics([0, 1, 0, 1], [0, 0, 0, 0])
    assert d.ppv is None and d.npv.estimate == 0.5 and d.sensitivity.estimate == 0.0


@pytest.mark.parametrize("y, pred, match", [
    ([1, 1, 1], [1, 0, 1], "negative"),
    ([0, 1, 1], [1, 0], "same length"),
    ([0, 1, 1], [1, 0, 2], "0/1"),
    ([0, 1, 1], [1, 0, np.nan], "NaN"),
])
def test_diagnostic_bad_input(y, pred, match):
    with pytest.raises(InvalidInputError, match=match):
        diagnostic_metrics(y, pred)


def test_thresholds():
    y = [0, 0, 0, 0, 1, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    yj = youden_threshold(y, s)
    # candidates: >=0.5 gives sens 1, spec 0.8 (J 0.8); >=0.7 gives sens 0.8, spec 1 (J 0.8): tie -> higher
    assert (yj.threshold, yj.sensitivity, yj.specificity) == (0.7, 0.8, 1.0)
    assert yj.youden_j == pytest.approx(0.8)
    t = threshold_at_sensitivity(y, s, 0.9)
    assert (t.threshold, t.sensitivity, t.specificity) == (0.5, 1.0, 0.8)
    t = threshold_at_sensitivity(y, s, 0.6)
    assert (t.threshold, t.sensitivity) == (0.8, 0.6)
    t = threshold_at_specificity(y, s, 0.8)
    assert (t.threshold, t.specificity, t.sensitivity) == (0.5, 0.8, 1.0)
    with pytest.raises(InvalidInputError, match="sensitivity"):
        threshold_at_sensitivity(y, s, 1.2)
    with pytest.raises(InvalidInputError, match="no observed threshold"):
        threshold_at_specificity([0, 1, 1, 0], [0.1, 0.2, 0.3, 0.9], 1.0)  # top score is a control


def test_threshold_sensitivity_is_reached_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(size=200)
    for target in (0.5, 0.8, 0.95, 1.0):
        t = threshold_at_sensitivity(y, s, target)
        assert t.sensitivity >= target
        d = diagnostic_metrics(y, s, threshold=t.threshold)
        assert d.sensitivity.estimate == pytest.approx(t.sensitivity)
        assert d.specificity.estimate == pytest.approx(t.specificity)
