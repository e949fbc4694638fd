"""Known-answer tests of Kaplan-Meier, log-rank and Cox regression."""

from __future__ import annotations

import numpy as np
import pytest

from oncolabel.errors import InvalidInputError
from oncolabel.stats import cox_fit, kaplan_meier, logrank_test, number_at_risk

# Freireich et al. 1963 / Gehan 1965 remission times (weeks) of acute leukaemia, 6-MP vs placebo
# (the classic example of Kleinbaum & Klein, Survival Analysis, and of Kalbfleisch & Prentice).
T_6MP = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
E_6MP = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
T_PLA = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]
E_PLA = [1] * 21


def test_leukaemia_km_matches_r_survfit():
    # R: summary(survfit(Surv(t6, e6) ~ 1, conf.type="log-log")); textbook S(t): .857 .807 .753 .690 .627 .538 .448
    km = kaplan_meier(T_6MP, E_6MP)
    ev = km.events > 0
    assert km.time[ev].tolist() == [6, 7, 10, 13, 16, 22, 23]
    assert km.at_risk[ev].tolist() == [21, 17, 15, 12, 11, 7, 6]
    assert km.survival[ev] == pytest.approx(
        [0.85714285714, 0.80672268908, 0.75294117647, 0.69019607843, 0.62745098039, 0.53781512605, 0.44817927171],
        rel=1e-10)
    assert km.ci_low[ev] == pytest.approx(
        [0.61971795527, 0.56314656462, 0.50319951080, 0.43161022249, 0.36751085599, 0.26777893677, 0.18805200596],
        rel=1e-9)
    assert km.ci_high[ev] == pytest.approx(
        [0.95155174765, 0.92280901920, 0.88936183517, 0.84906596335, 0.80491218947, 0.74679071764, 0.68014262850],
        rel=1e-9)
    assert km.median == 23.0
    assert km.median_ci == (13.0, None)  # upper limit not reached
    assert km.survival_at([0, 6, 6.5, 40]) == pytest.approx([1.0, 0.857142857, 0.857142857, 0.448179272])


def test_leukaemia_logrank_matches_textbook_and_r():
    # Kleinbaum & Klein: log-rank chi-square 16.79; R survdiff: 16.792940989, p 4.16880911e-05, E = 19.25, 10.75
    res = logrank_test(T_6MP + T_PLA, E_6MP + E_PLA, ["6-MP"] * 21 + ["placebo"] * 21)
    assert res.statistic == pytest.approx(16.792940989, rel=1e-9)
    assert res.p_value == pytest.approx(4.16880911e-05, rel=1e-8)
    assert res.df == 1
    assert res.groups == ("6-MP", "placebo")
    assert res.observed == (9.0, 21.0)
    assert res.expected == pytest.approx((19.250500948, 10.749499052), rel=1e-9)


# A small 3-group data set; reference values from R 4.x survival::survdiff and coxph(ties="efron").
T3 = [5, 8, 8, 12, 15, 3, 9, 14, 20, 22, 2, 4, 4, 7, 30, 11, 16, 18]
E3 = [1, 1, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 1, 1]
G3 = list("AAAAABBBBBCCCCCABC")
X3 = [1.2, 0.3, -0.5, 0.8, -1.1, 0.0, 2.1, -0.3, 0.9, -1.4, 1.7, 0.4, 1.1, -0.2, -0.9, 0.6, 0.1, 1.5]


def test_three_group_logrank_matches_r():
    res = logrank_test(T3, E3, G3)
    assert res.statistic == pytest.approx(0.293066260874007, rel=1e-10)
    assert res.df == 2
    assert res.expected == pytest.approx((2.97436974789916, 4.75651260504202, 4.26911764705882), rel=1e-10)


def test_cox_matches_r_coxph_efron():
    res = cox_fit(T3, E3, {"x": X3, "B": [g == "B" for g in G3]})
    assert list(res) == ["x", "B"]
    assert res["x"].coef == pytest.approx(0.67907081496942, rel=1e-4)
    assert res["x"].se == pytest.approx(0.331797282246685, rel=1e-4)
    assert res["x"].p_value == pytest.approx(0.0406930815431036, rel=1e-3)
    assert res["x"].hazard_ratio == pytest.approx(1.97204448643364, rel=1e-4)
    assert (res["x"].ci_low, res["x"].ci_high) == pytest.approx((1.02917765648776, 3.778705680169), rel=1e-4)
    assert res["B"].coef == pytest.approx(-0.27466653093164, rel=1e-4)


def test_lifelines_waltons_logrank():
    datasets = pytest.importorskip("lifelines.datasets")
    w = datasets.load_waltons()
    res = logrank_test(w["T"], w["E"], w["group"])
    assert res.statistic == pytest.approx(122.25, abs=0.005)  # lifelines docs, "Survival analysis with lifelines"
    assert res.p_value < 1e-20


def test_lifelines_rossi_cox():
    # Fox & Weisberg, "Cox proportional-hazards regression for survival data in R" (2011), Rossi recidivism data;
    # same values in lifelines' CoxPHFitter documentation.
    datasets = pytest.importorskip("lifelines.datasets")
    r = datasets.load_rossi()
    res = cox_fit(r["week"], r["arrest"], r.drop(columns=["week", "arrest"]))
    expected = {"fin": (-0.37942, 0.19138), "age": (-0.05744, 0.02200), "race": (0.31390, 0.30799),
                "wexp": (-0.14980, 0.21222), "mar": (-0.43370, 0.38187), "paro": (-0.08487, 0.19576),
                "prio": (0.09150, 0.02865)}
    for name, (coef, se) in expected.items():
        assert res[name].coef == pytest.approx(coef, abs=5e-5), name
        assert res[name].se == pytest.approx(se, abs=5e-5), name
    assert res["fin"].hazard_ratio == pytest.approx(0.6843, abs=1e-4)
    assert res["prio"].p_value == pytest.approx(0.0014, abs=1e-4)


def test_km_agrees_with_lifelines():
    lifelines = pytest.importorskip("lifelines")
    rng = np.random.default_rng(0)
    t = np.round(rng.exponential(10, 120), 0)
    e = rng.integers(0, 2, 120)
    ours = kaplan_meier(t, e)
    kmf = lifelines.KaplanMeierFitter().fit(t, e)
    theirs = kmf.survival_function_.iloc[:, 0]
    assert ours.survival == pytest.approx(theirs.loc[ours.time].to_numpy())
    ci = kmf.confidence_interval_
    assert ours.ci_low[:-1] == pytest.approx(ci.iloc[:, 0].loc[ours.time[:-1]].to_numpy(), rel=1e-6)
    assert ours.median == kmf.median_survival_time_


def test_logrank_properties():
    rng = np.random.default_rng(3)
    t = rng.exponential(5, 60)
    e = rng.integers(0, 2, 60)
    g = rng.integers(0, 3, 60)
    res = logrank_test(t, e, g)
    assert 0 <= res.p_value <= 1 and res.df == 2
    assert sum(res.observed) == pytest.approx(sum(res.expected))  # O and E totals agree
    same = logrank_test(np.r_[t, t], np.r_[e, e], np.r_[np.zeros(60), np.ones(60)])
    assert same.statistic == pytest.approx(0.0, abs=1e-12)  # identical groups


def test_number_at_risk():
    assert number_at_risk([1, 2, 2, 5, 8], [0, 2, 3, 8, 9]).tolist() == [5, 4, 2, 1, 0]


@pytest.mark.parametrize("time, event, group, match", [
    ([1, 2, -3], [1, 0, 1], [0, 1, 1], ">= 0"),
    ([1, 2, 3], [1, 0, 2], [0, 1, 1], "0/1"),
    ([1, 2, np.nan], [1, 0, 1], [0, 1, 1], "NaN"),
    ([1, 2, 3], [1, 0], [0, 1, 1], "same length"),
    ([1, 2, 3], [1, 0, 1], [0, 0, 0], "2 groups"),
    ([1, 2, 3], [0, 0, 0], [0, 1, 1], "event"),
])
def test_logrank_bad_input(time, event, group, match):
    with pytest.raises(InvalidInputError, match=match):
        logrank_test(time, event, group)


def test_cox_bad_input():
    with pytest.raises(InvalidInputError, match="constant"):
        cox_fit([1, 2, 3, 4], [1, 0, 1, 1], {"x": [1, 1, 1, 1]})
    with pytest.raises(InvalidInputError, match="same length"):
        cox_fit([1, 2, 3, 4], [1, 0, 1, 1], {"x": [1, 2, 3]})
    with pytest.raises(InvalidInputError, match="NaN"):
        cox_fit([1, 2, 3, 4], [1, 0, 1, 1], {"x": [1, 2, np.nan, 0]})
    with pytest.raises(InvalidInputError, match="mapping"):
        cox_fit([1, 2, 3, 4], [1, 0, 1, 1], [1, 2, 3, 4])
    with pytest.raises(InvalidInputError, match="event"):
        kaplan_meier([1, 2], [1, 3])
