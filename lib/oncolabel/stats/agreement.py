"""Agreement between repeated measurements: intra-class correlation.

Used by the radiomics stability filter (original vs perturbed re-acquisition) and by test-retest analyses.
"""

from __future__ import annotations

import numpy as np

from oncolabel.errors import InvalidInputError

__all__ = ["icc_1_1"]


def icc_1_1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One-way random-effects, single-measure intra-class correlation ICC(1,1) of paired columns.

    For ``n`` subjects measured twice (``a`` and ``b``, shape ``(n, p)``, one column per feature)::

        MSR = k * sum_i (m_i - m)^2 / (n - 1)          (k = 2 measurements, m_i subject means, m grand mean)
        MSW = sum_i sum_j (x_ij - m_i)^2 / (n (k - 1))
        ICC(1,1) = (MSR - MSW) / (MSR + (k - 1) MSW)

    (Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability. Psychol Bull
    1979;86:420-428.) A column with no variation at all gets ICC 0.
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] < 3:
        raise InvalidInputError(f"icc needs two (n, p) arrays with n >= 3, got shapes {a.shape} and {b.shape}")
    k, n = 2.0, a.shape[0]
    m_i = 0.5 * (a + b)
    msr = k * np.sum((m_i - m_i.mean(axis=0)) ** 2, axis=0) / (n - 1)
    msw = (np.sum((a - m_i) ** 2, axis=0) + np.sum((b - m_i) ** 2, axis=0)) / (n * (k - 1))
    den = msr + (k - 1) * msw
    with np.errstate(divide="ignore", invalid="ignore"):
        icc = np.where(den > 0, (msr - msw) / den, 0.0)
    return icc
