"""Shared input checks for :mod:`oncolabel.stats` (the one place they live).

Every public statistic converts its array-like inputs here, so a bad input fails the same way
everywhere: an :class:`oncolabel.errors.InvalidInputError` (a ``ValueError``) whose message names the
argument and the offending value. No function in the package returns a silent NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from oncolabel.errors import InvalidInputError

_SHOW = 5  # how many offending values a message lists


def _shown(values: np.ndarray) -> str:
    vals = [v.item() if hasattr(v, "item") else v for v in values[:_SHOW]]
    more = f" (+{len(values) - _SHOW} more)" if len(values) > _SHOW else ""
    return f"{vals}{more}"


def as_1d(x: Any, name: str) -> np.ndarray:
    """``x`` as a non-empty one-dimensional array."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InvalidInputError(f"{name} cannot be read as an array: {exc}") from exc
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidInputError(f"{name} is empty")
    return arr


def as_float(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D float array with every value finite (no NaN, no inf)."""
    arr = as_1d(x, name)
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{name} must be numeric: {exc}") from exc
    arr = arr.astype(float, copy=False)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InvalidInputError(
            f"{name} has {bad.size} non-finite value(s) (NaN or inf), first at index {int(bad[0])}; "
            "remove or impute them before computing statistics")
    return arr


def as_binary(y: Any, name: str = "y_true") -> np.ndarray:
    """``y`` as a 1-D int array of 0/1 (booleans and 0.0/1.0 accepted; 1 = positive)."""
    arr = as_1d(y, name)
    if arr.dtype.kind == "b":
        return arr.astype(int)
    if arr.dtype.kind not in "iuf":
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"{name} must hold 0/1 labels (1 = positive), got values {_shown(np.unique(arr))}") from None
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise InvalidInputError(f"{name} has {int(np.isnan(arr).sum())} missing (NaN) label(s)")
    bad = np.setdiff1d(np.unique(arr), [0, 1])
    if bad.size:
        raise InvalidInputError(
            f"{name} must hold only 0/1 labels (1 = positive), found {_shown(bad)}")
    return arr.astype(int)


def check_same_length(**arrays: np.ndarray) -> int:
    """Raise unless every array has the same length; return that length."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise InvalidInputError(f"inputs must have the same length, got {desc}")
    return next(iter(lengths.values()))


def check_both_classes(y: np.ndarray, name: str = "y_true", *, min_each: int = 1) -> tuple[int, int]:
    """Raise unless ``y`` has at least ``min_each`` positives and negatives; return (n_pos, n_neg)."""
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos < min_each or n_neg < min_each:
        raise InvalidInputError(
            f"{name} needs at least {min_each} positive(s) and {min_each} negative(s), "
            f"got {n_pos} positive and {n_neg} negative")
    return n_pos, n_neg


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float in (0, 1)."""
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def check_probabilities(p: np.ndarray, name: str) -> np.ndarray:
    """Raise unless every value of ``p`` lies in [0, 1]."""
    bad = np.flatnonzero((p < 0) | (p > 1))
    if bad.size:
        raise InvalidInputError(
            f"{name} must be probabilities in [0, 1]; found {_shown(p[bad])} "
            f"(first at index {int(bad[0])})")
    return p


def binary_and_scores(y_true: Any, y_score: Any, *, score_name: str = "y_score",
                      min_each: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels, scores) pair with both classes present."""
    y = as_binary(y_true, "y_true")
    s = as_float(y_score, score_name)
    check_same_length(y_true=y, **{score_name: s})
    check_both_classes(y, "y_true", min_each=min_each)
    return y, s


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
