"""GlmBoostClassifier against R's mboost::glmboost (known answers) and scikit-learn's estimator checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit
from sklearn.utils.estimator_checks import parametrize_with_checks

from oncolabel.scoring import GlmBoostClassifier
from oncolabel.scoring.glmboost import binomial_ngradient, componentwise_boost

# R's datasets::cars (Ezekiel 1930), 50 rows
CARS_SPEED = [4, 4, 7, 7, 8, 9, 10, 10, 10, 11, 11, 12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 16, 16,
              17, 17, 17, 18, 18, 18, 18, 19, 19, 19, 20, 20, 20, 20, 20, 22, 23, 24, 24, 24, 24, 25]
CARS_DIST = [2, 10, 4, 22, 16, 10, 18, 26, 34, 17, 28, 14, 20, 24, 28, 26, 34, 34, 46, 26, 36, 60, 80, 20, 26, 54, 32,
             40, 32, 40, 50, 42, 56, 76, 84, 36, 46, 68, 32, 48, 52, 56, 64, 66, 54, 70, 92, 93, 120, 85]


def test_componentwise_core_matches_mboost_cars_example():
    """mboost's own output (tests/Examples/mboost-Ex.Rout.save, example of ?methods, R 4.0.3):

    cars.gb_centered <- glmboost(dist ~ speed, data = cars, center = TRUE)   # mstop 100, nu 0.1, Gaussian
    coef(cars.gb_centered)   # (Intercept) -60.557486  speed 3.932304; offset 42.98
    selected(cars.gb_centered)  # 2 2 2 ... (intercept never selected)

    Same boosting core, centring and intercept candidate as the Binomial classifier; only the family differs.
    """
    speed, dist = np.asarray(CARS_SPEED, float), np.asarray(CARS_DIST, float)
    design = np.column_stack([np.ones(50), speed - speed.mean()])
    coef, selected, _ = componentwise_boost(design, dist, np.ones(50), offset=dist.mean(), n_iter=100, nu=0.1,
                                            ngradient=lambda y, f: y - f)
    assert dist.mean() == pytest.approx(42.98)
    assert coef[1] == pytest.approx(3.932304, abs=5e-7)
    assert coef[0] - speed.mean() * coef[1] == pytest.approx(-60.557486, abs=5e-7)
    assert set(selected.tolist()) == {1}


# y, x1, x2, x3 drawn with numpy (_glm_data), written with 17 significant digits and fitted in R 4.2.2 with
#   m <- glm(y ~ x1 + x2 + x3, data = d, family = binomial()); print(coef(m), digits = 15)
# which printed these numbers.
R_GLM_COEF = {"(Intercept)": -2.49906689689013, "x1": 2.82746187272882, "x2": -2.70708287277510,
              "x3": 0.49067756694423}


def _glm_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20240601)
    n = 120
    X = np.column_stack([rng.normal(size=n), rng.uniform(-1, 1, size=n), rng.normal(2.0, 3.0, size=n)])
    lp = -1.0 + 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.15 * X[:, 2]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-lp))).astype(int)
    return X, y


def test_converges_to_r_glm_maximum_likelihood():
    """mboost's regtest-glmboost: with nu = 1 and a large mstop, 2 * coef(glmboost, off2int = TRUE) equals glm()."""
    X, y = _glm_data()
    m = GlmBoostClassifier(n_estimators=4000, learning_rate=1.0).fit(X, y)
    assert m.intercept_ == pytest.approx(R_GLM_COEF["(Intercept)"], abs=1e-6)
    np.testing.assert_allclose(m.coef_, [R_GLM_COEF["x1"], R_GLM_COEF["x2"], R_GLM_COEF["x3"]], atol=1e-6)


def test_binomial_conventions_of_mboost():
    """Offset = half log-odds of the mean; y coded -1/+1; negative gradient with mboost's 1/log(2); candidates are
    the intercept and the centred columns; response 1/(1 + exp(-2f)); decision = 2f = X @ coef_ + intercept_."""
    X, y = _glm_data()
    m = GlmBoostClassifier(n_estimators=1, learning_rate=0.1).fit(X, y)
    pbar = y.mean()
    assert m.offset_ == pytest.approx(0.5 * math.log(pbar / (1 - pbar)))
    # one iteration by hand
    yy = np.where(y == 1, 1.0, -1.0)
    u = 2 * yy * np.exp(-2 * yy * m.offset_) / (math.log(2) * (1 + np.exp(-2 * yy * m.offset_)))
    np.testing.assert_allclose(binomial_ngradient(yy, np.full(y.size, m.offset_)), u)
    D = np.column_stack([np.ones(y.size), X - X.mean(axis=0)])
    mu = D.T @ u / np.sqrt((D * D).sum(axis=0))
    j = int(np.argmax(np.abs(mu)))
    beta = mu[j] / np.sqrt((D[:, j] ** 2).sum())
    assert m.selected_features_.tolist() == [j - 1]
    f = m.offset_ + 0.1 * beta * D[:, j]
    np.testing.assert_allclose(m.decision_function(X), 2 * f)
    np.testing.assert_allclose(m.predict_proba(X)[:, 1], 1 / (1 + np.exp(-2 * f)))
    np.testing.assert_allclose(m.decision_function(X), X @ m.coef_ + m.intercept_)
    # constant covariates: every fit is 0, the first candidate (the intercept, reported as -1) wins the tie
    m2 = GlmBoostClassifier(n_estimators=3).fit(np.ones((y.size, 2)), y)
    assert m2.selected_features_.tolist() == [-1, -1, -1]
    assert m2.coef_.tolist() == [0.0, 0.0] and m2.intercept_ == pytest.approx(2 * m.offset_)


def test_response_is_clipped_like_mboost():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    m = GlmBoostClassifier(n_estimators=5).fit(X, [0, 0, 1, 1])
    far = np.array([[1e6], [-1e6]])
    p = m.predict_proba(far)[:, 1]
    assert p[0] == pytest.approx(expit(72.0)) and p[1] == pytest.approx(expit(-72.0))
    assert m.predict(far).tolist() == [1, 0]


def test_bad_parameters_and_targets():
    X, y = _glm_data()
    with pytest.raises(ValueError, match="n_estimators"):
        GlmBoostClassifier(n_estimators=0).fit(X, y)
    with pytest.raises(ValueError, match="learning_rate"):
        GlmBoostClassifier(learning_rate=1.5).fit(X, y)
    with pytest.raises(ValueError, match="binary"):
        GlmBoostClassifier().fit(X, np.arange(y.size) % 3)


@parametrize_with_checks([GlmBoostClassifier()], expected_failed_checks=lambda est: {
    "check_sample_weight_equivalence_on_dense_data":
        "mboost centres the covariates with unweighted column means (glmboost.formula), so a zero weight is not "
        "the same as removing the row; we follow mboost"})
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
