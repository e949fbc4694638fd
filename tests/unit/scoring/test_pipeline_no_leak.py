"""Selection lives inside the cross-validation: pure noise stays at chance, and no fitted step sees test rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin, clone

from oncolabel.errors import InvalidInputError
from oncolabel.scoring.models import METHODS, cross_validate_models, make_classifier, model_pipeline
from oncolabel.stats import PatientStratifiedKFold, roc_auc


def _noise(n: int = 60, p: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"rad:f{i}" for i in range(p)],
                     index=[f"p{i:03d}" for i in range(n)])
    y = np.r_[np.ones(n // 3, int), np.zeros(n - n // 3, int)]
    return x, y, x.index.to_numpy()


def test_selection_before_cv_leaks_but_ours_does_not():
    x, y, ids = _noise()
    cv = PatientStratifiedKFold(5, random_state=0)
    # the classic mistake: pick the 10 "best" features on all rows, then cross-validate
    strength = np.abs(x[y == 1].mean() - x[y == 0].mean()) / x.std()
    leaky = x[strength.nlargest(10).index]
    oof = np.zeros(y.size)
    for tr, te in cv.split(leaky, y, ids):
        m = make_classifier("logistic").fit(leaky.iloc[tr], y[tr])
        oof[te] = m.predict_proba(leaky.iloc[te])[:, 1]
    assert roc_auc(y, oof) > 0.75  # optimistic nonsense on pure noise
    res = cross_validate_models(x, y, ids, feature_stage=None,
                                models={"glmboost": model_pipeline("glmboost", features="radiomics")}, cv=cv)
    assert abs(roc_auc(y, res.oof["glmboost"]) - 0.5) < 0.2


class Spy(TransformerMixin, BaseEstimator):
    """Records the row labels it was fitted on (the feature stage of the CV)."""

    log: list = []

    def fit(self, X, y=None):  # noqa: N803
        Spy.log.append(set(X.index))
        return self

    def transform(self, X):  # noqa: N803
        return X


def test_no_fitted_step_sees_a_fold_test_row(monkeypatch):
    x, y, ids = _noise(n=45, p=30)
    seen: list[set] = []
    from oncolabel.features import selection

    for cls in (selection.StabilityFilter, selection.RedundancyFilter, selection.LassoSelector):
        real = cls.fit

        def spy(self, X, y=None, _real=real):  # noqa: N803
            seen.append(set(X.index))
            return _real(self, X, y)

        monkeypatch.setattr(cls, "fit", spy)
    Spy.log = []
    models = {m: model_pipeline(m, features="radiomics") for m in ("glmboost", "svm")}
    res = cross_validate_models(x, y, ids, feature_stage=Spy(), models=models, cv=PatientStratifiedKFold(3,
                                                                                                          random_state=1))
    assert len(Spy.log) == 3 and len(seen) == 3 * 3 * len(models)
    for k, (tr, te) in enumerate(res.folds):
        test_rows = set(x.index[te])
        assert Spy.log[k] == set(x.index[tr])
        for rows in seen[k * 3 * len(models):(k + 1) * 3 * len(models)]:
            assert rows and not rows & test_rows
    assert set(res.oof) == set(models)


def test_patient_leak_is_refused():
    x, y, ids = _noise(n=30, p=5)

    class Leaky:
        def split(self, X, y, groups):  # noqa: N803
            yield np.arange(20), np.arange(15, 30)  # rows 15-19 in both

    with pytest.raises(InvalidInputError, match="both the training and the test set"):
        cross_validate_models(x, y, ids, feature_stage=None, models={"g": model_pipeline("glmboost", features="radiomics")},
                              cv=Leaky())


@pytest.mark.parametrize("method", list(METHODS))
def test_every_learner_runs_in_the_pipeline(method):
    x, y, _ = _noise(n=40, p=12, seed=3)
    x["rad:f0"] += y * 2.0
    pipe = clone(model_pipeline(method, features="radiomics")).fit(x, y)
    from oncolabel.scoring.models import positive_score

    s = positive_score(pipe, x)
    assert s.shape == (40,) and np.isfinite(s).all() and roc_auc(y, s) > 0.7


@pytest.mark.parametrize("method", list(METHODS))
def test_every_learner_depends_on_its_seed_only(method):
    """The same fit whatever numpy's global random state (liblinear, used by the LASSO step and the L1 logistic
    learner, shuffles with it unless given a seed)."""
    from oncolabel.scoring.models import positive_score

    x, y, _ = _noise(n=60, p=80, seed=5)
    x["rad:f0"] += y * 1.0
    scores = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        scores.append(positive_score(clone(model_pipeline(method, features="radiomics")).fit(x, y), x))
    assert np.array_equal(scores[0], scores[1])
