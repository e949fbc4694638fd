"""Known-answer and property tests of oncolabel.stats.roc."""

from __future__ import annotations

import numpy as np
import pytest

from oncolabel.errors import InvalidInputError
from oncolabel.stats import (
    delong_covariance,
    delong_test,
    delong_test_unpaired,
    roc_auc,
    roc_auc_ci,
    roc_curve,
    roc_curve_band,
)

# Hanley & McNeil, Radiology 1982;143:29-36, Table 1: 109 CT images rated on a 5-point scale
# (1 = definitely normal ... 5 = definitely abnormal); 58 truly normal, 51 truly abnormal.
HM_NEG = [1] * 33 + [2] * 6 + [3] * 6 + [4] * 11 + [5] * 2
HM_POS = [1] * 3 + [2] * 2 + [3] * 2 + [4] * 11 + [5] * 33
HM_Y = [0] * 58 + [1] * 51
HM_S = HM_NEG + HM_POS

# A small fixed data set (one decimal: many ties). Reference values below come from R 4.x,
# pROC 1.18.0: roc(y, a, levels=c(0,1), direction="<"), var(), cov(), ci.auc(),
# roc.test(..., method="delong", paired=TRUE/FALSE) -- script kept in docs/stats.md.
Y = [0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0,
     1, 1, 0, 1]
A = [-0.2, 0.1, 2.0, -0.2, -0.4, 0.4, 0.5, 1.2, 0.4, 0.4, 2.9, 0.4, 0.3, -0.0, 1.4, 1.9, 0.7, -0.8, -0.0, 0.7,
     1.5, 0.5, -0.7, 1.0, 0.9, 1.0, 0.9, 1.0, 1.5, 0.1, 0.3, 0.6, -1.5, 0.5, 0.3, -0.6, 0.5, 2.3, -0.9, 1.8]
B = [-1.7, 0.2, 0.7, 0.6, 0.7, 1.3, -0.3, 0.0, 0.9, -0.2, -0.8, -0.6, -0.4, 1.0, 0.6, 1.2, 0.1, 0.2, 1.1, -0.3,
     1.0, -0.7, -0.4, 0.1, -0.7, 1.0, -0.5, 0.5, 1.0, 0.4, 0.7, -0.1, -0.4, 0.4, -1.2, -1.4, -0.8, -0.5, 0.4, -0.4]
Y2 = [0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1]
C = [-0.5, 0.2, 1.2, 2.8, -0.2, 0.2, 0.2, 1.4, 2.6, 0.8, 1.6, 1.5, -1.2, -0.6, -0.9, 0.8, -1.4, 0.6, 1.0, -1.5,
     0.2, 0.3, 2.0, 3.2, 4.1, 0.4, -1.0, -0.9, 0.3, 0.4]


def _random(seed: int = 0, n: int = 80, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    return y, y * shift + rng.normal(size=n)


# ----------------------------------------------------------------------------- known answers


def test_hanley_mcneil_ct_auc():
    res = roc_auc_ci(HM_Y, HM_S)
    assert res.auc == pytest.approx(0.893, abs=5e-4)  # published value
    assert res.auc == pytest.approx(0.893171061528059, rel=1e-12)  # pROC auc()
    assert res.variance == pytest.approx(0.000943989270262985, rel=1e-10)  # pROC var(method="delong")
    assert (res.ci_low, res.ci_high) == pytest.approx((0.832952327658172, 0.953389795397947), rel=1e-10)
    # Hanley & McNeil's own SE (exponential approximation) is 0.032; DeLong's is close to it
    assert res.se == pytest.approx(0.032, abs=0.002)
    assert (res.n_pos, res.n_neg) == (51, 58)


def test_auc_ci_matches_proc():
    res = roc_auc_ci(Y, A)
    assert res.auc == pytest.approx(0.837595907928389, rel=1e-12)
    assert res.variance == pytest.approx(0.00375316050927311, rel=1e-10)
    assert (res.ci_low, res.ci_high) == pytest.approx((0.717522548918873, 0.957669266937904), rel=1e-10)


def test_paired_delong_matches_proc():
    res = delong_test(Y, A, B)
    assert res.auc_a == pytest.approx(0.837595907928389, rel=1e-12)
    assert res.auc_b == pytest.approx(0.608695652173913, rel=1e-12)
    assert res.covariance_matrix.shape == (2, 2)
    assert res.covariance == pytest.approx(-0.000136822846765547, rel=1e-9)  # pROC cov(roc_a, roc_b)
    assert res.var_b == pytest.approx(0.00819179177387522, rel=1e-10)
    assert res.cov_ab == pytest.approx(-0.000136822846765547, rel=1e-9)
    assert res.statistic == pytest.approx(2.07078776386517, rel=1e-10)
    assert res.p_value == pytest.approx(0.0383786342172881, rel=1e-9)
    assert (res.ci_low, res.ci_high) == pytest.approx((0.012250213118822, 0.445550298390129), rel=1e-9)


@pytest.mark.parametrize("y_b, s_a, s_b, stat, df, p", [
    (Y2, A, C, -0.136426774092684, 62.2355881137083, 0.891924267476111),
    (Y2, B, C, -2.09537450064264, 67.5157806092331, 0.0398909664162131),
])
def test_unpaired_delong_matches_proc(y_b, s_a, s_b, stat, df, p):
    res = delong_test_unpaired(Y, s_a, y_b, s_b)
    assert res.statistic == pytest.approx(stat, rel=1e-10)
    assert res.df == pytest.approx(df, rel=1e-10)
    assert res.p_value == pytest.approx(p, rel=1e-9)


def test_identical_scores_give_z0_p1():
    res = delong_test(Y, A, A)
    assert (res.statistic, res.p_value) == (0.0, 1.0)


def test_delong_covariance_matches_single_variance():
    aucs, cov = delong_covariance(Y, A, B, C[:10] * 4)
    assert cov.shape == (3, 3)
    assert np.allclose(cov, cov.T)
    assert cov[0, 0] == pytest.approx(roc_auc_ci(Y, A).variance)
    assert aucs[1] == pytest.approx(roc_auc(Y, B))


# ----------------------------------------------------------------------------- properties


def test_perfect_and_reversed_scores():
    y = [0, 0, 0, 1, 1, 1]
    assert roc_auc(y, [1, 2, 3, 4, 5, 6]) == 1.0
    assert roc_auc(y, [6, 5, 4, 3, 2, 1]) == 0.0  # direction is never guessed
    assert roc_auc(y, [1, 1, 1, 1, 1, 1]) == 0.5  # ties count one half
    res = roc_auc_ci(y, [1, 2, 3, 4, 5, 6])
    assert (res.auc, res.ci_low, res.ci_high, res.variance) == (1.0, 1.0, 1.0, 0.0)


def test_swapping_classes_gives_one_minus_auc():
    y, s = _random(1)
    assert roc_auc(1 - y, s) == pytest.approx(1 - roc_auc(y, s))
    assert roc_auc(y, -s) == pytest.approx(1 - roc_auc(y, s))


def test_invariant_to_monotone_transform():
    y, s = _random(2)
    base = roc_auc_ci(y, s)
    other = roc_auc_ci(y, np.exp(3 * s) + 7)
    assert other.auc == pytest.approx(base.auc)
    assert other.variance == pytest.approx(base.variance)


def test_auc_equals_pairwise_definition():
    y, s = _random(3, n=30)
    s = np.round(s, 0)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert roc_auc(y, s) == pytest.approx(brute)


@pytest.mark.parametrize("method", ["delong", "bootstrap"])
def test_ci_contains_estimate_and_p_in_range(method):
    for seed in range(5):
        y, s = _random(seed, n=40, shift=0.8)
        res = roc_auc_ci(y, s, method=method, n_boot=300, random_state=seed)
        assert 0.0 <= res.ci_low <= res.auc <= res.ci_high <= 1.0
        _, s2 = _random(seed + 100, n=40)
        t = delong_test(y, s, s2)
        assert 0.0 <= t.p_value <= 1.0
        u = delong_test_unpaired(y, s, y, s2)
        assert 0.0 <= u.p_value <= 1.0 and u.df > 0


def test_bootstrap_is_seeded_and_close_to_delong():
    res1 = roc_auc_ci(HM_Y, HM_S, method="bootstrap", n_boot=1000, random_state=7)
    res2 = roc_auc_ci(HM_Y, HM_S, method="bootstrap", n_boot=1000, random_state=7)
    assert res1 == res2
    assert res1.variance == roc_auc_ci(HM_Y, HM_S).variance  # variance is always DeLong's
    assert res1.ci_low == pytest.approx(0.833, abs=0.015)
    assert res1.ci_high == pytest.approx(0.953, abs=0.015)


def test_stratified_bootstrap_keeps_class_sizes(monkeypatch):
    import oncolabel.stats.roc as roc

    seen = []
    real = roc._stratified_boot

    def spy(y, n_boot, rs):
        for rows in real(y, n_boot, rs):
            seen.append(np.asarray(y)[rows].sum(axis=1))
            yield rows

    monkeypatch.setattr(roc, "_stratified_boot", spy)
    roc_auc_ci(HM_Y, HM_S, method="bootstrap", n_boot=50, random_state=0)
    assert np.all(np.concatenate(seen) == 51)


def test_roc_curve_and_band():
    curve = roc_curve(HM_Y, HM_S)
    assert curve.thresholds[0] == np.inf
    assert (curve.fpr[0], curve.tpr[0], curve.fpr[-1], curve.tpr[-1]) == (0, 0, 1, 1)
    assert np.trapz(curve.tpr, curve.fpr) == pytest.approx(roc_auc(HM_Y, HM_S))  # trapezoid = Mann-Whitney
    # threshold 4 (probably abnormal or worse): 44/51 abnormal and 13/58 normal called positive
    i = list(curve.thresholds).index(4)
    assert curve.tpr[i] == pytest.approx(44 / 51) and curve.fpr[i] == pytest.approx(13 / 58)
    band = roc_curve_band(HM_Y, HM_S, n_boot=200, random_state=0)
    assert band.fpr.shape == band.tpr_low.shape == band.tpr_high.shape == (101,)
    assert np.all(band.tpr_low <= band.tpr + 1e-12) and np.all(band.tpr <= band.tpr_high + 1e-12)
    at = roc_curve_band(HM_Y, HM_S, fpr_grid=[0, 2 / 58, 13 / 58], n_boot=20, random_state=0)
    assert at.tpr == pytest.approx([0, 33 / 51, 44 / 51])  # the ROC's vertices


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("y, s, match", [
    ([0, 1, 1, 0], [0.1, np.nan, 0.3, 0.2], "NaN"),
    ([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], "negative"),
    ([0, 1, 1], [0.1, 0.2], "same length"),
    ([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4], "0/1"),
    (["a", "b", "a", "b"], [0.1, 0.2, 0.3, 0.4], "0/1"),
    ([], [], "empty"),
])
def test_bad_input_raises(y, s, match):
    for func in (roc_auc, roc_auc_ci, roc_curve):
        with pytest.raises(InvalidInputError, match=match):
            func(y, s)
    with pytest.raises(ValueError):
        delong_test(y, s, s)


def test_bad_options_raise():
    with pytest.raises(InvalidInputError, match="method"):
        roc_auc_ci(Y, A, method="hanley")
    with pytest.raises(InvalidInputError, match="alpha"):
        roc_auc_ci(Y, A, alpha=1.5)
    with pytest.raises(InvalidInputError, match="n_boot"):
        roc_auc_ci(Y, A, method="bootstrap", n_boot=0)
    with pytest.raises(InvalidInputError, match="at least 2"):
        roc_auc_ci([0, 0, 1], [0.1, 0.2, 0.3])  # DeLong variance needs 2 per class
    with pytest.raises(InvalidInputError, match="same length"):
        delong_test(Y, A, B[:-1])
    with pytest.raises(InvalidInputError, match="zero"):
        delong_test_unpaired([0, 0, 1, 1], [1, 2, 3, 4], [0, 0, 1, 1], [1, 2, 3, 4])
