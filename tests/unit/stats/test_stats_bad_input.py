"""Every public statistic taking (y_true, score) rejects the same bad inputs the same way."""

from __future__ import annotations

import numpy as np
import pytest

from oncolabel import stats
from oncolabel.errors import InvalidInputError

GOOD_Y = [0, 1, 0, 1, 0, 1, 1, 0]
GOOD_S = [0.1, 0.8, 0.3, 0.6, 0.65, 0.9, 0.4, 0.2]  # not separable

FUNCS = {
    "roc_auc": stats.roc_auc,
    "roc_auc_ci": stats.roc_auc_ci,
    "roc_auc_ci bootstrap": lambda y, s: stats.roc_auc_ci(y, s, method="bootstrap", n_boot=20, random_state=0),
    "roc_curve": stats.roc_curve,
    "roc_curve_band": lambda y, s: stats.roc_curve_band(y, s, n_boot=20, random_state=0),
    "delong_test a": lambda y, s: stats.delong_test(y, s, GOOD_S[: len(y)] if len(y) <= 8 else s),
    "delong_test b": lambda y, s: stats.delong_test(y, GOOD_S[: len(y)] if len(y) <= 8 else s, s),
    "delong_test_unpaired a": lambda y, s: stats.delong_test_unpaired(y, s, GOOD_Y, GOOD_S),
    "delong_test_unpaired b": lambda y, s: stats.delong_test_unpaired(GOOD_Y, GOOD_S, y, s),
    "net_benefit": lambda y, s: stats.net_benefit(y, s, [0.2, 0.5]),
    "brier_score": stats.brier_score,
    "calibration": stats.calibration,
    "reliability_curve": stats.reliability_curve,
    "diagnostic_metrics": lambda y, s: stats.diagnostic_metrics(y, s, threshold=0.5),
    "youden_threshold": stats.youden_threshold,
    "threshold_at_sensitivity": lambda y, s: stats.threshold_at_sensitivity(y, s, 0.8),
    "threshold_at_specificity": lambda y, s: stats.threshold_at_specificity(y, s, 0.8),
}

BAD = {
    "NaN score": (GOOD_Y, [0.1, np.nan, 0.3, 0.6, 0.35, 0.9, 0.4, 0.2], "NaN"),
    "inf score": (GOOD_Y, [0.1, np.inf, 0.3, 0.6, 0.35, 0.9, 0.4, 0.2], "non-finite"),
    "single class": ([1] * 8, GOOD_S, "negative"),
    "mismatched lengths": (GOOD_Y, GOOD_S[:-1], "same length"),
    "non-binary labels": ([0, 1, 2, 1, 0, 1, 1, 0], GOOD_S, "0/1"),
    "NaN label": ([0, 1, np.nan, 1, 0, 1, 1, 0], GOOD_S, "missing"),
    "2-D scores": (GOOD_Y, np.ones((8, 2)) * 0.5, "one-dimensional"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("name", list(FUNCS))
def test_bad_input_raises_named_error(name, case):
    y, s, match = BAD[case]
    with pytest.raises(InvalidInputError, match=match):
        FUNCS[name](y, s)


@pytest.mark.parametrize("name", list(FUNCS))
def test_good_input_works_and_has_no_nan(name):
    res = FUNCS[name](GOOD_Y, GOOD_S)
    items = res if isinstance(res, list) else [res]
    for item in items:
        values = vars(item).values() if hasattr(item, "__dataclass_fields__") else [item]
        for v in values:
            if isinstance(v, (float, np.ndarray)):
                assert not np.isnan(np.asarray(v, dtype=float)).any(), f"{name} returned NaN"


def test_invalid_input_error_is_value_error():
    with pytest.raises(ValueError):
        stats.roc_auc([0, 1], [0.1, np.nan])
