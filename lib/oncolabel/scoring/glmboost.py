"""Component-wise L2 gradient boosting of a logistic model: R's ``mboost::glmboost`` with ``Binomial()``.

The RDP score of the emulated study was a glmBoost model (ten learners compared, glmBoost chosen). This is a
re-implementation of exactly what

.. code-block:: r

    glmboost(y ~ ., data = d, family = Binomial(), control = boost_control(mstop = M, nu = NU))

computes (mboost 2.x; formula interface, so ``center = TRUE``), taken line by line from mboost's sources
(``R/mboost.R``: ``glmboost.formula`` and ``mboost_fit``; ``R/bolscw.R``; ``R/family.R``: ``Binomial_adaboost``):

* Design: the model matrix ``[1, x_1 - mean(x_1), ..., x_p - mean(x_p)]`` (unweighted column means); every
  column is one candidate base-learner, the intercept column included.
* Response coded ``y in {-1, +1}`` (+1 = second class); the model works on *half* the log-odds,
  ``f = log(p / (1 - p)) / 2``.
* Offset ``f_0 = 1/2 log(pbar / (1 - pbar))``, ``pbar`` the weighted share of ``y = +1``.
* Negative gradient (mboost's literal expression, which carries a ``1 / log 2`` factor because it is the
  gradient of ``log2(1 + exp(-2 y f))``)::

      u = 2 y exp(-2 y f) / (log(2) (1 + exp(-2 y f)))

* Each iteration fits every column by weighted least squares to ``u``
  (``beta_j = sum(w x_j u) / sum(w x_j^2)``), keeps the column with the largest
  ``|sum(w x_j u)| / sqrt(sum(w x_j^2))`` (smallest residual sum of squares; the first on ties), and updates
  ``f <- f + nu beta_j x_j``.
* ``predict(type = "response") = exp(f) / (exp(f) + exp(-f)) = 1 / (1 + exp(-2 f))`` with ``f`` clipped to
  ``[-36, 36]``; the class is the second level when ``f > 0``.
* Non-integer case weights are rescaled to sum to the number of positive weights (mboost's
  ``rescale_weights``); integer weights are used as given.

Public scale: :attr:`GlmBoostClassifier.coef_`, :attr:`~GlmBoostClassifier.intercept_` and
:meth:`~GlmBoostClassifier.decision_function` are on the ordinary log-odds scale, i.e. twice mboost's
``coef(..., off2int = TRUE)`` and twice ``predict(type = "link")``.

References
----------
Buehlmann P, Hothorn T. Boosting algorithms: regularization, prediction and model fitting. Stat Sci
2007;22:477-505.
Hofner B, Mayr A, Robinzonov N, Schmid M. Model-based boosting in R: a hands-on tutorial using the R package
mboost. Comput Stat 2014;29:3-35.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

__all__ = ["GlmBoostClassifier", "componentwise_boost"]

_EPS = np.finfo(float).eps
_F_CLIP = 36.0  # mboost clips f to [-36, 36] before the response function


def rescale_weights(w: np.ndarray) -> np.ndarray:
    """mboost's ``rescale_weights``: integer weights unchanged, others scaled to sum to ``sum(w > 0)``."""
    if np.max(np.abs(w - np.floor(w))) < math.sqrt(_EPS):
        return w
    return w / w.sum() * np.count_nonzero(w > 0)


def binomial_ngradient(y: np.ndarray, f: np.ndarray) -> np.ndarray:
    """mboost ``Binomial()`` negative gradient ``2 y exp(-2yf) / (log 2 (1 + exp(-2yf)))`` (``y`` in -1/+1).

    Written as ``2 y expit(-2 y f) / log 2``, which is the same number without overflow.
    """
    return 2.0 * y * expit(-2.0 * y * f) / math.log(2.0)


def componentwise_boost(design: np.ndarray, y: np.ndarray, w: np.ndarray, *, offset: float, n_iter: int,
                        nu: float, ngradient: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mboost's ``mboost_fit`` with one ``bolscw`` base-learner (component-wise least squares).

    Parameters
    ----------
    design : (n, p) model matrix (already centred where wanted; an intercept column is a plain column).
    y : response as the family codes it.
    w : case weights (already rescaled).
    offset : starting value of ``f``.
    n_iter : ``mstop``.
    nu : step length.
    ngradient : ``ngradient(y, f) -> u``.

    Returns
    -------
    coef : (p,) summed coefficients, ``nu * sum of the per-iteration fits`` of each column.
    selected : (n_iter,) the column chosen at each iteration.
    f : (n,) the final fit on the training rows.
    """
    xtx = np.einsum("ij,ij,i->j", design, design, w)
    xtx[xtx < _EPS] = 1.0  # zero columns: as in bolscw
    sxtx = np.sqrt(xtx)
    f = np.full(design.shape[0], float(offset))
    coef = np.zeros(design.shape[1])
    selected = np.empty(n_iter, dtype=int)
    for m in range(n_iter):
        u = ngradient(y, f)
        mu = design.T @ (u * w) / sxtx
        j = int(np.argmax(np.abs(mu)))  # first maximum, as which(mmu == amu)[1]
        beta = mu[j] / sxtx[j]
        f += nu * beta * design[:, j]
        coef[j] += nu * beta
        selected[m] = j
    return coef, selected, f


class GlmBoostClassifier(ClassifierMixin, BaseEstimator):
    """Binary logistic glmBoost, equivalent to ``mboost::glmboost(y ~ ., family = Binomial())``.

    Parameters
    ----------
    n_estimators : int, default 100
        Boosting iterations (mboost's ``mstop``).
    learning_rate : float, default 0.1
        Step length (mboost's ``nu``).

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Class labels; the second is the "positive" class (mboost's second factor level).
    coef_ : ndarray of shape (n_features,)
        Log-odds coefficients (twice mboost's ``coef``), so that
        ``decision_function(X) == X @ coef_ + intercept_``.
    intercept_ : float
        Log-odds intercept: twice (offset + intercept base-learner - centring correction).
    offset_ : float
        mboost's offset on its half-log-odds scale, ``1/2 log(pbar / (1 - pbar))``.
    center_ : ndarray of shape (n_features,)
        Column means used for centring.
    selected_features_ : ndarray of shape (n_estimators,)
        0-based column chosen at each iteration; -1 is the intercept candidate.
    n_features_in_ : int

    Notes
    -----
    ``predict_proba(X)[:, 1]`` equals mboost's ``predict(type = "response")``; ``decision_function`` is twice
    mboost's ``predict(type = "link")`` (mboost's Binomial works on half the log-odds). See the module
    docstring for the algorithm.
    """

    def __init__(self, n_estimators: int = 100, learning_rate: float = 0.1) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate

    def _check_params(self) -> None:
        if isinstance(self.n_estimators, bool) or not isinstance(self.n_estimators, (int, np.integer)) \
                or self.n_estimators < 1:
            raise ValueError(f"n_estimators must be a positive integer, got {self.n_estimators!r}")
        if not (isinstance(self.learning_rate, (int, float, np.floating)) and 0 < self.learning_rate <= 1):
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate!r}")

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "GlmBoostClassifier":  # noqa: N803 - sklearn API
        """Fit ``n_estimators`` boosting iterations.

        Raises
        ------
        ValueError
            Bad parameters, non-finite ``X``, or not exactly two classes in ``y``.
        """
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=False)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {y_type}.")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"y has only one class ({self.classes_.tolist()}); two classes are needed")
        w = rescale_weights(_check_sample_weight(sample_weight, X, dtype=np.float64))
        yy = np.where(y_idx == 1, 1.0, -1.0)
        pbar = float(np.sum(w * (yy > 0)) / np.sum(w))
        if not 0.0 < pbar < 1.0:
            raise ValueError(f"y needs both classes with positive weight; the weighted share of class "
                             f"{self.classes_[1]!r} is {pbar:g}")
        self.offset_ = 0.5 * math.log(pbar / (1.0 - pbar))
        self.center_ = X.mean(axis=0)  # glmboost centres with unweighted colMeans
        design = np.hstack([np.ones((X.shape[0], 1)), X - self.center_])
        coef, selected, _ = componentwise_boost(design, yy, w, offset=self.offset_, n_iter=int(self.n_estimators),
                                                nu=float(self.learning_rate), ngradient=binomial_ngradient)
        half = coef[1:]
        self.coef_ = 2.0 * half
        self.intercept_ = float(2.0 * (self.offset_ + coef[0] - self.center_ @ half))
        self.selected_features_ = selected - 1
        return self

    def _half_link(self, X: Any) -> np.ndarray:  # noqa: N803
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return 0.5 * (X @ self.coef_ + self.intercept_)

    def decision_function(self, X: Any) -> np.ndarray:  # noqa: N803
        """Log-odds of the positive class, ``X @ coef_ + intercept_`` (twice mboost's link)."""
        return 2.0 * self._half_link(X)

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """``[1 - p, p]`` with ``p = 1 / (1 + exp(-2 f))``, ``f`` clipped to [-36, 36] (mboost's response)."""
        p = expit(2.0 * np.clip(self._half_link(X), -_F_CLIP, _F_CLIP))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """Second class where ``f > 0`` (mboost's ``rclass``), else the first."""
        positive = self._half_link(X) > 0
        return self.classes_[positive.astype(int)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags
