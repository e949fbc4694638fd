"""The ten learners of the RDP-score comparison, their shared selection pipeline, and fold-wise cross-validation.

Every learner gets the same steps, all fitted on the training rows only (see
:mod:`oncolabel.features.selection`)::

    ColumnSubset -> StabilityFilter -> RedundancyFilter -> StandardScaler -> LassoSelector -> learner

:func:`cross_validate_models` fits the expensive *feature stage* (the deep-feature CNN) once per fold on that
fold's training rows and then every model pipeline on the fold's features, so all learners are compared on the same
patient-level folds and nothing learned ever sees a fold's test rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from oncolabel.errors import InvalidInputError
from oncolabel.features.deep import DEEP_PREFIX
from oncolabel.features.selection import RAD_PREFIX, ColumnSubset, LassoSelector, RedundancyFilter, StabilityFilter
from oncolabel.scoring.glmboost import GlmBoostClassifier
from oncolabel.stats import check_patient_splits

__all__ = ["METHODS", "FEATURE_SETS", "CVResult", "make_classifier", "model_pipeline", "positive_score",
           "cross_validate_models", "selection_frequency"]

#: learner name -> one-line description (the order of the comparison table)
METHODS: dict[str, str] = {
    "logistic": "logistic regression (L2, C = 1)",
    "l1_logistic": "L1-penalised logistic regression (C = 0.5)",
    "svm": "support-vector machine (RBF kernel, C = 1)",
    "random_forest": "random forest (300 trees, min 3 per leaf)",
    "extra_trees": "extremely randomised trees (300 trees, min 3 per leaf)",
    "gradient_boosting": "gradient-boosted trees (scikit-learn, 150 depth-2 trees, rate 0.05)",
    "xgboost": "XGBoost (200 depth-2 trees, rate 0.05, subsample 0.8)",
    "knn": "k-nearest neighbours (k = 15, distance-weighted)",
    "naive_bayes": "Gaussian naive Bayes",
    "glmboost": "glmBoost (component-wise boosted logistic model, mstop 100, nu 0.1)",
}

#: feature set name -> column prefixes
FEATURE_SETS: dict[str, tuple[str, ...]] = {"radiomics": (RAD_PREFIX,), "deep": (DEEP_PREFIX,),
                                            "combined": (RAD_PREFIX, DEEP_PREFIX)}


def make_classifier(name: str, seed: int = 0) -> Any:
    """A fresh, unfitted learner of :data:`METHODS` (``n_jobs=1`` everywhere: folds are the parallel unit)."""
    from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    if name == "logistic":
        return LogisticRegression(C=1.0, max_iter=5000)
    if name == "l1_logistic":
        # liblinear shuffles with numpy's global random state unless given one
        return LogisticRegression(C=0.5, l1_ratio=1.0, solver="liblinear", max_iter=5000, random_state=seed)
    if name == "svm":
        return SVC(kernel="rbf", C=1.0, gamma="scale")
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=300, min_samples_leaf=3, random_state=seed, n_jobs=1)
    if name == "extra_trees":
        return ExtraTreesClassifier(n_estimators=300, min_samples_leaf=3, random_state=seed, n_jobs=1)
    if name == "gradient_boosting":
        return GradientBoostingClassifier(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8,
                                          random_state=seed)
    if name == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(n_estimators=200, max_depth=2, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8,
                             n_jobs=1, random_state=seed, verbosity=0)
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=15, weights="distance")
    if name == "naive_bayes":
        return GaussianNB()
    if name == "glmboost":
        return GlmBoostClassifier(n_estimators=100, learning_rate=0.1)
    raise InvalidInputError(f"unknown learner {name!r}; known: {', '.join(METHODS)}")


def model_pipeline(method: str = "glmboost", *, features: str = "combined", seed: int = 0, max_features: int = 20,
                   stability_threshold: float = 0.75, redundancy_threshold: float = 0.9) -> Pipeline:
    """Selection steps + learner as one scikit-learn pipeline (pandas output between steps)."""
    if features not in FEATURE_SETS:
        raise InvalidInputError(f"unknown feature set {features!r}; known: {', '.join(FEATURE_SETS)}")
    steps = [("subset", ColumnSubset(FEATURE_SETS[features])),
             ("stability", StabilityFilter(threshold=stability_threshold)),
             ("redundancy", RedundancyFilter(threshold=redundancy_threshold)),
             ("scale", StandardScaler()),
             ("lasso", LassoSelector(max_features=max_features, random_state=seed)),
             ("clf", make_classifier(method, seed))]
    return Pipeline(steps).set_output(transform="pandas")


def positive_score(model: Any, X: Any) -> np.ndarray:  # noqa: N803
    """A score that increases with the positive class: ``predict_proba[:, 1]``, else ``decision_function``."""
    clf = model[-1] if isinstance(model, Pipeline) else model
    if hasattr(clf, "predict_proba"):
        return np.asarray(model.predict_proba(X))[:, 1]
    return np.asarray(model.decision_function(X))


@dataclass
class CVResult:
    """Out-of-fold scores of every model on the same folds.

    Attributes
    ----------
    oof : model name -> out-of-fold score per training row (row order of ``X``).
    folds : ``(train_rows, test_rows)`` per fold.
    fitted : model name -> the pipeline fitted in each fold (for selection frequencies).
    seconds : wall time per phase.
    """

    oof: dict[str, np.ndarray]
    folds: list[tuple[np.ndarray, np.ndarray]]
    fitted: dict[str, list[Pipeline]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def cross_validate_models(X: pd.DataFrame, y: Any, groups: Any, *, feature_stage: Any,  # noqa: N803
                          models: Mapping[str, Pipeline], cv: Any,
                          score: Callable[[Any, Any], np.ndarray] = positive_score,
                          progress: Callable[[str], None] | None = None) -> CVResult:
    """Patient-level cross-validation of several model pipelines sharing one feature stage per fold.

    Parameters
    ----------
    X : rows = patients; columns the feature stage understands (paths, ``rad:`` ...).
    y : 0/1 outcome.
    groups : patient id per row (checked: no patient in two folds' test sets or in train and test).
    feature_stage : unfitted transformer (cloned; ``fit_transform`` on each fold's training rows, ``transform`` on
        its test rows), or None.
    models : name -> unfitted pipeline (cloned per fold).
    cv : splitter with ``split(X, y, groups)`` (e.g. :class:`oncolabel.stats.PatientStratifiedKFold`).
    score : ``(fitted model, X) -> score``.
    """
    yy = np.asarray(y).astype(int)
    if len(X) != yy.size:
        raise InvalidInputError(f"X has {len(X)} rows but y has {yy.size}")
    folds = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, yy, groups)]
    check_patient_splits(folds, groups)
    oof = {name: np.full(yy.size, np.nan) for name in models}
    fitted: dict[str, list[Pipeline]] = {name: [] for name in models}
    secs = {"feature_stage": 0.0, "models": 0.0}
    for k, (tr, te) in enumerate(folds, start=1):
        t0 = time.perf_counter()
        if feature_stage is not None:  # fit_transform: a cross-fitting stage gives its out-of-fold training rows
            stage = clone(feature_stage)
            z_tr = stage.fit_transform(X.iloc[tr], yy[tr])
            z_te = stage.transform(X.iloc[te])
        else:
            z_tr, z_te = X.iloc[tr], X.iloc[te]
        t1 = time.perf_counter()
        for name, pipe in models.items():
            model = clone(pipe).fit(z_tr, yy[tr])
            oof[name][te] = score(model, z_te)
            fitted[name].append(model)
        t2 = time.perf_counter()
        secs["feature_stage"] += t1 - t0
        secs["models"] += t2 - t1
        if progress is not None:
            progress(f"fold {k}/{len(folds)}: feature stage {t1 - t0:.0f} s, {len(models)} models {t2 - t1:.0f} s")
    missing = [n for n, v in oof.items() if np.isnan(v).any()]
    if missing:
        raise InvalidInputError(f"the folds did not cover every row for {missing}")
    return CVResult(oof=oof, folds=folds, fitted=fitted, seconds=secs)


def selection_frequency(fitted: Sequence[Pipeline]) -> dict[str, float]:
    """Share of folds in which each feature reached the learner (after the LASSO step)."""
    counts: dict[str, int] = {}
    for model in fitted:
        for c in model.named_steps["lasso"].keep_:
            counts[c] = counts.get(c, 0) + 1
    return {c: n / max(len(fitted), 1) for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}
