"""Intra-class correlation: a hand-computed known answer."""

from __future__ import annotations

import numpy as np
import pytest

from oncolabel.errors import InvalidInputError
from oncolabel.stats import icc_1_1


def test_icc_1_1_known_answer():
    """Shrout & Fleiss (1979) one-way ICC computed by hand for 5 subjects rated twice.

    Ratings (a, b): (9, 8), (6, 7), (8, 8), (7, 5), (10, 9). Subject means 8.5, 6.5, 8, 6, 9.5; grand mean 7.7.
    MSR = 2 * sum((m_i - 7.7)^2) / 4 = 2 * 8.3 / 4 = 4.15; MSW = (0.5 + 0.5 + 0 + 2 + 0.5) / 5 = 0.7;
    ICC(1,1) = (4.15 - 0.7) / (4.15 + 0.7) = 0.71134...
    """
    a = np.array([[9.0], [6.0], [8.0], [7.0], [10.0]])
    b = np.array([[8.0], [7.0], [8.0], [5.0], [9.0]])
    assert icc_1_1(a, b)[0] == pytest.approx(3.45 / 4.85)
    assert icc_1_1(a, a)[0] == pytest.approx(1.0)
    with pytest.raises(InvalidInputError):
        icc_1_1(a[:2], b[:2])
