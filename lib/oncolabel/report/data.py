"""Input tables of a study report and their CSV formats.

predictions.csv
    One row per patient (per patient and subset when ``subset`` is given):

    ``patient_id``
        Any string; unique (within each subset).
    ``y_true``
        1 = positive (case), 0 = negative (control).
    ``score_<model>``
        One or more columns, one per model (or phase, or reader): higher = more likely positive.
        ``<model>`` names the model in the report. Calibration and decision curves are drawn only
        for models whose scores are probabilities in [0, 1].
    ``subset`` (optional; ``group`` is accepted as its alias)
        A cohort / centre / phase label. AUCs are also given per subset, and compared between
        subsets with the unpaired DeLong test when no patient is in both.

    Other columns are ignored. Empty cells are errors, not silently dropped.

survival.csv
    One row per patient: ``patient_id``, ``time`` (follow-up, >= 0, any one unit), ``event``
    (1 = event such as recurrence or death observed at ``time``, 0 = censored at ``time``),
    ``group`` (the curve the patient belongs to, e.g. a risk group; at least two groups).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from oncolabel.errors import InvalidInputError
from oncolabel.stats._validation import as_1d, as_binary, as_float, check_same_length

SCORE_PREFIX = "score_"


def _text_column(values: Any, name: str) -> np.ndarray:
    arr = as_1d(values, name)
    text = np.array([str(v).strip() for v in arr], dtype=object)
    missing = [i for i, (raw, v) in enumerate(zip(arr, text))
               if raw is None or v in ("", "nan", "None") or (isinstance(raw, float) and np.isnan(raw))]
    if missing:
        raise InvalidInputError(f"{name} is missing in {len(missing)} row(s), first at row {missing[0] + 1}")
    return text


def _check_unique(ids: np.ndarray, within: np.ndarray | None, what: str) -> None:
    keys = ids if within is None else np.array([f"{s}\x00{i}" for s, i in zip(within, ids)], dtype=object)
    uniq, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        dup = [str(k).split("\x00")[-1] for k in uniq[counts > 1][:5]]
        scope = " within a subset" if within is not None else ""
        raise InvalidInputError(f"{what}: patient_id must be unique{scope}; repeated: {dup}")


@dataclass(frozen=True)
class PredictionTable:
    """Validated per-patient predictions of one or more models.

    Attributes
    ----------
    patient_id : ndarray of str
    y_true : ndarray of int (0/1)
    scores : dict model name -> ndarray of float
    subset : ndarray of str or None
    """

    patient_id: np.ndarray
    y_true: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    subset: np.ndarray | None = None

    @classmethod
    def from_arrays(cls, y_true: Any, scores: Mapping[str, Any], *, patient_id: Any = None,
                    subset: Any = None) -> PredictionTable:
        """Build from in-memory arrays (``patient_id`` defaults to the row number)."""
        y = as_binary(y_true, "y_true")
        if not scores:
            raise InvalidInputError("at least one model's scores are needed")
        cols = {str(k): as_float(v, f"{SCORE_PREFIX}{k}") for k, v in scores.items()}
        ids = (np.array([str(i + 1) for i in range(y.size)], dtype=object) if patient_id is None
               else _text_column(patient_id, "patient_id"))
        sub = None if subset is None else _text_column(subset, "subset")
        check_same_length(y_true=y, patient_id=ids, **cols, **({} if sub is None else {"subset": sub}))
        _check_unique(ids, sub, "predictions")
        return cls(patient_id=ids, y_true=y, scores=cols, subset=sub)

    @classmethod
    def from_frame(cls, frame: Any) -> PredictionTable:
        """Build from a pandas DataFrame in the predictions.csv format."""
        columns = [str(c) for c in frame.columns]
        for need in ("patient_id", "y_true"):
            if need not in columns:
                raise InvalidInputError(f"predictions table has no {need!r} column; columns are {columns}")
        models = {c[len(SCORE_PREFIX):]: frame[c].to_numpy() for c in columns
                  if c.startswith(SCORE_PREFIX) and len(c) > len(SCORE_PREFIX)}
        if not models:
            raise InvalidInputError(
                f"predictions table has no score column (named '{SCORE_PREFIX}<model>'); columns are {columns}")
        subset_col = next((c for c in ("subset", "group") if c in columns), None)
        return cls.from_arrays(frame["y_true"].to_numpy(), models, patient_id=frame["patient_id"].to_numpy(),
                               subset=None if subset_col is None else frame[subset_col].to_numpy())


@dataclass(frozen=True)
class SurvivalTable:
    """Validated per-patient follow-up: ``time`` (>= 0), ``event`` (0/1), ``group``."""

    patient_id: np.ndarray
    time: np.ndarray
    event: np.ndarray
    group: np.ndarray

    @classmethod
    def from_arrays(cls, time: Any, event: Any, group: Any, *, patient_id: Any = None) -> SurvivalTable:
        t = as_float(time, "time")
        if (t < 0).any():
            raise InvalidInputError(f"time must be >= 0, found {t[t < 0][:5].tolist()}")
        e = as_binary(event, "event")
        g = _text_column(group, "group")
        ids = (np.array([str(i + 1) for i in range(t.size)], dtype=object) if patient_id is None
               else _text_column(patient_id, "patient_id"))
        check_same_length(time=t, event=e, group=g, patient_id=ids)
        _check_unique(ids, None, "survival")
        return cls(patient_id=ids, time=t, event=e, group=g)

    @classmethod
    def from_frame(cls, frame: Any) -> SurvivalTable:
        """Build from a pandas DataFrame in the survival.csv format."""
        columns = [str(c) for c in frame.columns]
        missing = [c for c in ("patient_id", "time", "event", "group") if c not in columns]
        if missing:
            raise InvalidInputError(f"survival table lacks column(s) {missing}; columns are {columns}")
        return cls.from_arrays(frame["time"].to_numpy(), frame["event"].to_numpy(), frame["group"].to_numpy(),
                               patient_id=frame["patient_id"].to_numpy())


def _read_csv(path: str | Path) -> Any:
    import pandas as pd  # local: only CSV input needs it

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such file: {p}")
    try:
        return pd.read_csv(p, dtype={"patient_id": str, "subset": str, "group": str}, keep_default_na=True)
    except (ValueError, pd.errors.ParserError) as exc:
        raise InvalidInputError(f"{p} is not a readable CSV file: {exc}") from exc


def read_predictions_csv(path: str | Path) -> PredictionTable:
    """Read and validate a predictions.csv (format in this module's docstring)."""
    try:
        return PredictionTable.from_frame(_read_csv(path))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from exc


def read_survival_csv(path: str | Path) -> SurvivalTable:
    """Read and validate a survival.csv (format in this module's docstring)."""
    try:
        return SurvivalTable.from_frame(_read_csv(path))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from exc
