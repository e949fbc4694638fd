"""Feature selection steps, each a scikit-learn transformer on a DataFrame, meant to sit *inside* a pipeline.

Radiomics practice (stability, then redundancy, then a sparse model) in the order of the RDP-score study:

1. :class:`StabilityFilter` - keep features whose values agree between the original image and a perturbed
   re-acquisition (noise, blur, contour variation): ICC(1,1) >= threshold (Zwanenburg A et al. Assessing
   robustness of radiomic features by image perturbation. Sci Rep 2019;9:614; Koo TK, Li MY. J Chiropr Med
   2016;15:155 for ICC thresholds).
2. :class:`RedundancyFilter` - of every group of features with ``|Spearman rho| >= threshold`` keep the one that
   separates the classes best on the training rows.
3. :class:`LassoSelector` - L1-penalised logistic regression with the penalty chosen by inner cross-validation;
   the features with non-zero coefficients (at most ``max_features``) are kept (Tibshirani R. J R Stat Soc B
   1996;58:267).

Because each step learns only in ``fit``, placing them in a :class:`sklearn.pipeline.Pipeline` that is itself
cross-validated keeps every selection decision inside the training folds (no leakage).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from oncolabel.errors import InvalidInputError
from oncolabel.stats.agreement import icc_1_1

__all__ = ["ColumnSubset", "LassoSelector", "RedundancyFilter", "StabilityFilter", "icc_1_1", "RAD_PREFIX",
           "REPLICATE_PREFIX"]

RAD_PREFIX = "rad:"
REPLICATE_PREFIX = "radp:"


def _frame(X: Any) -> pd.DataFrame:  # noqa: N803
    if not isinstance(X, pd.DataFrame):
        raise InvalidInputError("the selection steps work on DataFrames with named feature columns")
    return X


class _Selector(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Shared transform: keep ``self.keep_`` (columns named at fit time) in their input order.

    The output is always a DataFrame, so scikit-learn's output wrapping is switched off and ``set_output`` is a
    no-op (pipelines may still call it).
    """

    def set_output(self, *, transform: str | None = None) -> "_Selector":
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        check_is_fitted(self, "keep_")
        X = _frame(X)
        missing = [c for c in self.keep_ if c not in X.columns]
        if missing:
            raise InvalidInputError(f"{type(self).__name__}: input lacks fitted column(s) {missing[:5]}")
        return X[list(self.keep_)]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "keep_")
        return np.asarray(self.keep_, dtype=object)


class ColumnSubset(_Selector):
    """Keep the columns whose names start with one of ``prefixes`` (e.g. radiomics-only, deep-only).

    With ``rad:`` among the prefixes the perturbed replicates (``radp:``) are kept too, for the stability filter.
    """

    def __init__(self, prefixes: Sequence[str] = (RAD_PREFIX,)) -> None:
        self.prefixes = prefixes

    def fit(self, X: pd.DataFrame, y: Any = None) -> "ColumnSubset":  # noqa: N803
        X = _frame(X)
        prefixes = tuple(self.prefixes) + ((REPLICATE_PREFIX,) if RAD_PREFIX in self.prefixes else ())
        self.keep_ = [c for c in X.columns if str(c).startswith(prefixes)]
        if not self.keep_:
            raise InvalidInputError(f"no column starts with {list(self.prefixes)}")
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        """The kept columns; perturbed replicates are optional (only the stability filter's ``fit`` uses them)."""
        check_is_fitted(self, "keep_")
        X = _frame(X)
        missing = [c for c in self.keep_ if c not in X.columns and not str(c).startswith(REPLICATE_PREFIX)]
        if missing:
            raise InvalidInputError(f"ColumnSubset: input lacks fitted column(s) {missing[:5]}")
        return X[[c for c in self.keep_ if c in X.columns]]


class StabilityFilter(_Selector):
    """Drop features whose perturbation ICC(1,1) on the training rows is below ``threshold``.

    A feature ``rad:<name>`` is tested when the column ``radp:<name>`` (its value on the perturbed
    re-acquisition) exists; the ICC uses the training rows where both values are present (at least
    ``min_pairs``). Other columns pass unchanged; every ``radp:`` column is dropped.
    """

    def __init__(self, threshold: float = 0.75, min_pairs: int = 10) -> None:
        self.threshold = threshold
        self.min_pairs = min_pairs

    def fit(self, X: pd.DataFrame, y: Any = None) -> "StabilityFilter":  # noqa: N803
        X = _frame(X)
        rad = [c for c in X.columns if str(c).startswith(RAD_PREFIX)
               and REPLICATE_PREFIX + str(c)[len(RAD_PREFIX):] in X.columns]
        self.icc_ = {}
        if rad:
            a = X[rad].to_numpy(float)
            b = X[[REPLICATE_PREFIX + c[len(RAD_PREFIX):] for c in rad]].to_numpy(float)
            rows = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
            if rows.sum() < self.min_pairs:
                raise InvalidInputError(f"stability filter: only {int(rows.sum())} training rows have a perturbed "
                                        f"replicate; need {self.min_pairs}")
            self.icc_ = dict(zip(rad, icc_1_1(a[rows], b[rows]).tolist()))
        unstable = {c for c, v in self.icc_.items() if v < self.threshold}
        self.keep_ = [c for c in X.columns if not str(c).startswith(REPLICATE_PREFIX) and c not in unstable]
        return self


def _auc_strength(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``|AUC - 0.5|`` of each column against binary ``y`` (Mann-Whitney by ranks, ties one half)."""
    ranks = _st.rankdata(x, axis=0)
    pos = y == 1
    m, n = pos.sum(), (~pos).sum()
    auc = (ranks[pos].sum(axis=0) - m * (m + 1) / 2.0) / (m * n)
    return np.abs(auc - 0.5)


class RedundancyFilter(_Selector):
    """Greedy redundancy removal: strongest feature first, drop those with ``|Spearman rho| >= threshold`` to a
    kept one. Constant columns are dropped. Strength is ``|AUC - 0.5|`` on the training rows."""

    def __init__(self, threshold: float = 0.9) -> None:
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y: Any) -> "RedundancyFilter":  # noqa: N803
        X = _frame(X)
        x = X.to_numpy(float)
        yy = np.asarray(y).astype(int)
        if not np.isfinite(x).all():
            raise InvalidInputError("redundancy filter: the features contain NaN or inf")
        varying = np.ptp(x, axis=0) > 0
        cols = np.flatnonzero(varying)
        strength = _auc_strength(x[:, cols], yy)
        order = cols[np.argsort(-strength, kind="stable")]
        rho = np.abs(np.atleast_2d(_st.spearmanr(x[:, order]).statistic)) if order.size > 1 else np.ones((1, 1))
        kept: list[int] = []
        for pos in range(order.size):
            if all(rho[pos, q] < self.threshold for q in kept):
                kept.append(pos)
        chosen = set(order[kept].tolist())
        self.keep_ = [c for j, c in enumerate(X.columns) if j in chosen]
        self.strength_ = dict(zip([X.columns[j] for j in cols], strength.tolist()))
        return self


class LassoSelector(_Selector):
    """Features with non-zero L1-logistic coefficients, the penalty chosen by inner stratified CV (AUC).

    Parameters
    ----------
    max_features : int
        Keep at most this many (largest ``|coef|`` on standardised inputs).
    Cs : int
        Number of penalties on a log grid (``LogisticRegressionCV``).
    cv : int
        Inner folds.
    random_state : int
        Seed of the inner fold split.
    """

    def __init__(self, max_features: int = 20, Cs: int = 12, cv: int = 5, random_state: int = 0) -> None:  # noqa: N803
        self.max_features = max_features
        self.Cs = Cs
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Any) -> "LassoSelector":  # noqa: N803
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        X = _frame(X)
        x = X.to_numpy(float)
        yy = np.asarray(y).astype(int)
        mu, sd = x.mean(axis=0), x.std(axis=0)
        z = (x - mu) / np.where(sd > 0, sd, 1.0)
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
        # liblinear shuffles its coordinates with numpy's global random state unless given one: without it the
        # selection depended on what ran before in the process (a cross-validation on noise went from AUC 0.5 to 0.72)
        lr = LogisticRegressionCV(Cs=self.Cs, cv=folds, l1_ratios=(1.0,), solver="liblinear", scoring="roc_auc",
                                  max_iter=2000, use_legacy_attributes=False,
                                  random_state=self.random_state).fit(z, yy)
        coef = np.ravel(lr.coef_)
        nz = np.flatnonzero(coef != 0)
        if nz.size == 0:  # the penalty removed everything: keep the single strongest feature
            nz = np.array([int(np.argmax(_auc_strength(x, yy)))])
        nz = nz[np.argsort(-np.abs(coef[nz]), kind="stable")][: int(self.max_features)]
        chosen = set(nz.tolist())
        self.keep_ = [c for j, c in enumerate(X.columns) if j in chosen]
        self.C_ = float(np.ravel(lr.C_)[0])
        self.coef_ = dict(zip(X.columns, coef.tolist()))
        return self
