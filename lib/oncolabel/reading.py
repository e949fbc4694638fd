"""AI-assisted reading: simulated readers for reader-vs-AI-vs-reader+AI studies on phantom cohorts.

The bone-metastasis study compared radiologists alone, the AI alone and radiologists with the AI. Real reads
cannot be had here, so :func:`simulate_reads` draws them from a documented model; :func:`oncolabel.stats.reader_study`
then analyses them exactly as it would analyse real reads (per-reader sensitivity/specificity, McNemar tests,
pooled estimates, Obuchowski-Rockette). Results from simulated readers say how the analysis behaves, not how
radiologists perform: every output says so.

Reader model (per reading unit, e.g. a slice or a lesion): reader ``r`` has a sensitivity ``s_r`` and a specificity
``c_r`` drawn uniformly from the given ranges. *Unaided*, a positive unit is called positive with probability
``s_r`` and a negative unit with probability ``1 - c_r``. *Aided*, the reader keeps every own positive call and, of the
units the AI flags that the reader did not call, accepts a true AI finding with probability ``accept_true`` and a
false AI finding with probability ``accept_false`` (readers can be misled by the AI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from oncolabel.errors import InvalidInputError

SIMULATED_NOTICE = "simulated readers (documented model), not a real reader study; research use only"


@dataclass(frozen=True)
class SimulatedReads:
    """Reads of ``n_readers`` simulated readers: arrays ``(n_readers, n_units)`` of 0/1 calls."""

    readers: tuple[str, ...]
    unaided: np.ndarray
    aided: np.ndarray
    sensitivity: tuple[float, ...]
    specificity: tuple[float, ...]
    notice: str = SIMULATED_NOTICE


def simulate_reads(y_true: Any, ai_calls: Any, *, n_readers: int = 4, sensitivity: tuple[float, float] = (0.6, 0.8),
                   specificity: tuple[float, float] = (0.95, 0.99), accept_true: float = 0.85,
                   accept_false: float = 0.25, random_state: int | None = 0) -> SimulatedReads:
    """Draw unaided and aided reads for ``n_readers`` readers (model in the module docstring)."""
    y = np.asarray(y_true).astype(int)
    ai = np.asarray(ai_calls).astype(int)
    if y.shape != ai.shape or y.ndim != 1:
        raise InvalidInputError(f"y_true {y.shape} and ai_calls {ai.shape} must be 1-D of equal length")
    if not set(np.unique(y)) <= {0, 1} or not set(np.unique(ai)) <= {0, 1}:
        raise InvalidInputError("y_true and ai_calls must be 0/1")
    for name, (lo, hi) in (("sensitivity", sensitivity), ("specificity", specificity)):
        if not 0 <= lo <= hi <= 1:
            raise InvalidInputError(f"{name} range {lo, hi}: need 0 <= low <= high <= 1")
    if n_readers < 1:
        raise InvalidInputError(f"n_readers={n_readers}: must be >= 1")
    rng = np.random.default_rng(random_state)
    sens = rng.uniform(*sensitivity, n_readers)
    spec = rng.uniform(*specificity, n_readers)
    u = rng.random((n_readers, y.size))
    unaided = np.where(y == 1, u < sens[:, None], u < 1 - spec[:, None]).astype(int)
    accept = np.where(y == 1, accept_true, accept_false)
    took_ai = (rng.random((n_readers, y.size)) < accept) & (ai == 1)
    aided = (unaided | took_ai).astype(int)
    return SimulatedReads(readers=tuple(f"reader_{i + 1}" for i in range(n_readers)), unaided=unaided, aided=aided,
                          sensitivity=tuple(float(s) for s in sens), specificity=tuple(float(s) for s in spec))
