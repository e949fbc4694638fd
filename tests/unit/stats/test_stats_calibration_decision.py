"""Known-answer tests of calibration and decision-curve analysis."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from oncolabel.errors import InvalidInputError
from oncolabel.stats import brier_score, calibration, net_benefit, reliability_curve

Y = [0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0,
     1, 1, 0, 1]
A = [-0.2, 0.1, 2.0, -0.2, -0.4, 0.4, 0.5, 1.2, 0.4, 0.4, 2.9, 0.4, 0.3, -0.0, 1.4, 1.9, 0.7, -0.8, -0.0, 0.7,
     1.5, 0.5, -0.7, 1.0, 0.9, 1.0, 0.9, 1.0, 1.5, 0.1, 0.3, 0.6, -1.5, 0.5, 0.3, -0.6, 0.5, 2.3, -0.9, 1.8]
P = expit(0.6 * np.array(A) - 0.2)


def test_calibration_matches_r_glm():
    # R 4.x, p <- plogis(0.6 * a - 0.2), ctl <- glm.control(epsilon=1e-15) (tight convergence; with the
    # default epsilon=1e-8 R's SEs come from the penultimate IRLS iterate and differ in the 4th digit):
    #   glm(y ~ qlogis(p), binomial, control=ctl):         slope 4.18718264943527 (SE 1.44949498782151)
    #   glm(y ~ offset(qlogis(p)), binomial, control=ctl): intercept 0.184674279038521 (SE 0.330074357767341)
    #   mean((p - y)^2) = 0.187589671293844
    res = calibration(Y, P)
    assert res.slope == pytest.approx(4.18718264943527, rel=1e-9)
    assert res.intercept == pytest.approx(0.184674279038521, rel=1e-9)
    z = 1.959963984540054
    assert res.slope_ci == pytest.approx((4.18718264943527 - z * 1.44949498782151,
                                          4.18718264943527 + z * 1.44949498782151), rel=1e-6)
    assert res.intercept_ci[1] - res.intercept_ci[0] == pytest.approx(2 * z * 0.330074357767341, rel=1e-6)
    assert res.brier == pytest.approx(0.187589671293844, rel=1e-12)
    assert brier_score(Y, P) == res.brier


def test_perfectly_calibrated_model_has_slope_one_intercept_zero():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 20000)
    y = (rng.random(p.size) < p).astype(int)
    res = calibration(y, p)
    assert res.slope == pytest.approx(1.0, abs=0.06)
    assert res.intercept == pytest.approx(0.0, abs=0.05)
    assert res.slope_ci[0] < 1.0 < res.slope_ci[1]
    assert res.observed_expected == pytest.approx(1.0, abs=0.02)


def test_brier_known_values():
    assert brier_score([0, 1], [0.0, 1.0]) == 0.0
    assert brier_score([0, 1, 1, 0], [0.5] * 4) == 0.25
    assert brier_score([1, 0], [0.2, 0.6]) == pytest.approx((0.64 + 0.36) / 2)


def test_reliability_curve_bins():
    y = [0, 0, 1, 1, 1, 0]
    p = [0.05, 0.15, 0.15, 0.85, 0.95, 0.95]
    c = reliability_curve(y, p, n_bins=2)
    assert c.counts.tolist() == [3, 3]
    assert c.mean_predicted == pytest.approx([(0.05 + 0.15 + 0.15) / 3, (0.85 + 0.95 + 0.95) / 3])
    assert c.observed == pytest.approx([1 / 3, 2 / 3])
    assert np.all(c.ci_low <= c.observed) and np.all(c.observed <= c.ci_high)
    q = reliability_curve(np.r_[Y, Y], np.r_[P, P], n_bins=4, strategy="quantile")
    assert q.counts.sum() == 80 and len(q.counts) == 4
    assert reliability_curve(y, [1.0] * 6, n_bins=10).counts.tolist() == [6]  # p = 1 is in the last bin


def test_calibration_bad_input():
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        calibration([0, 1, 1], [0.2, 1.3, 0.5])
    with pytest.raises(InvalidInputError, match="negative"):
        calibration([1, 1, 1], [0.2, 0.3, 0.5])
    with pytest.raises(InvalidInputError, match="separated"):
        calibration([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    with pytest.raises(InvalidInputError, match="NaN"):
        brier_score([0, 1], [0.1, np.nan])
    with pytest.raises(InvalidInputError, match="strategy"):
        reliability_curve([0, 1], [0.1, 0.2], strategy="kmeans")


def test_net_benefit_hand_computed():
    # 10 patients, 4 positive; scores 0.1 .. 1.0
    y = [0, 0, 0, 1, 0, 0, 1, 0, 1, 1]
    s = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    r20, r50 = net_benefit(y, s, [0.2, 0.5])
    # pt 0.2: treated s>=0.2 -> 9 patients, TP 4, FP 5; odds 0.25
    assert (r20.tp, r20.fp) == (4, 5)
    assert r20.model == pytest.approx(4 / 10 - 5 / 10 * 0.25)
    assert r20.treat_all == pytest.approx(0.4 - 0.6 * 0.25)
    assert r20.treat_none == 0.0
    # pt 0.5: treated s>=0.5 -> TP 3, FP 3; odds 1
    assert r50.model == pytest.approx(0.0) and r50.treat_all == pytest.approx(-0.2)
    assert r50.threshold == 0.5


def test_net_benefit_properties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 * y + rng.uniform(0, 0.5, 300), 0, 1)
    res = net_benefit(y, p, np.linspace(0.01, 0.99, 50))
    assert len(res) == 50
    for r in res:  # net benefit never exceeds the prevalence
        assert r.model <= y.mean() + 1e-12 and r.treat_all <= y.mean() + 1e-12
    # a model that calls everyone positive equals treat-all
    allpos = net_benefit(y, np.ones(300), [0.1, 0.3])
    assert [r.model for r in allpos] == pytest.approx([r.treat_all for r in allpos])
    assert net_benefit(y, p, 0.3)[0].threshold == 0.3  # a scalar threshold


@pytest.mark.parametrize("thresholds", [[0.0], [1.0], [0.2, 1.5], [np.nan]])
def test_net_benefit_bad_thresholds(thresholds):
    with pytest.raises(InvalidInputError):
        net_benefit([0, 1], [0.2, 0.8], thresholds)


def test_net_benefit_needs_probabilities():
    with pytest.raises(InvalidInputError, match="probabilities"):
        net_benefit([0, 1], [-2.0, 3.0], [0.2])
