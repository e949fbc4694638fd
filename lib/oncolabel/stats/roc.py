"""ROC analysis: AUC with confidence intervals, ROC curves with bands, DeLong tests.

Conventions (all functions): ``y_true`` is 0/1 with 1 = positive (case), a higher score means "more
likely positive", and the direction is never guessed (an AUC below 0.5 is reported as such). The AUC
is the Mann-Whitney probability P(score_case > score_control) + 0.5 P(tie).

References
----------
DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated receiver
operating characteristic curves: a nonparametric approach. Biometrics 1988;44:837-845.
Sun X, Xu W. Fast implementation of DeLong's algorithm for comparing the areas under correlated
receiver operating characteristic curves. IEEE Signal Process Lett 2014;21:1389-1393.
Hanley JA, McNeil BJ. The meaning and use of the area under a ROC curve. Radiology 1982;143:29-36.
Robin X et al. pROC: an open-source package for R and S+ to analyze and compare ROC curves.
BMC Bioinformatics 2011;12:77.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
from scipy import stats as _st

from oncolabel.errors import InvalidInputError
from oncolabel.stats._validation import (
    as_binary,
    as_float,
    binary_and_scores,
    check_alpha,
    check_positive_int,
    check_same_length,
)

_BOOT_CHUNK = 256  # bootstrap replicates ranked at once (bounds memory)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------- placements


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components (placement values) by midranks (Sun & Xu 2014).

    ``V10[i]`` = fraction of controls below case i (ties 1/2); ``V01[j]`` = fraction of cases above
    control j (ties 1/2). The AUC is the mean of either.
    """
    m, n = pos.size, neg.size
    tz = _st.rankdata(np.concatenate([pos, neg]))
    v10 = (tz[:m] - _st.rankdata(pos)) / n
    v01 = 1.0 - (tz[m:] - _st.rankdata(neg)) / m
    return float(v10.mean()), v10, v01


def _delong_var(v10: np.ndarray, v01: np.ndarray) -> float:
    """DeLong variance var(V10)/m + var(V01)/n (sample variances, ddof=1)."""
    return float(np.var(v10, ddof=1) / v10.size + np.var(v01, ddof=1) / v01.size)


def _z(alpha: float) -> float:
    return float(_st.norm.ppf(1.0 - alpha / 2.0))


def _stratified_boot(y: np.ndarray, n_boot: int, random_state: Any) -> Iterator[np.ndarray]:
    """Chunks of stratified bootstrap index rows: cases first, then controls, each resampled apart."""
    rng = np.random.default_rng(random_state)
    pos_idx, neg_idx = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    done = 0
    while done < n_boot:
        k = min(_BOOT_CHUNK, n_boot - done)
        rows = np.hstack([rng.choice(pos_idx, size=(k, pos_idx.size)),
                          rng.choice(neg_idx, size=(k, neg_idx.size))])
        done += k
        yield rows


def _boot_aucs(y: np.ndarray, s: np.ndarray, n_boot: int, random_state: Any) -> np.ndarray:
    """AUC of each stratified bootstrap replicate (vectorised Mann-Whitney by ranks)."""
    m, n = int(y.sum()), int(y.size - y.sum())
    out = []
    for rows in _stratified_boot(y, n_boot, random_state):
        ranks = _st.rankdata(s[rows], axis=1)
        out.append((ranks[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n))
    return np.concatenate(out)


# --------------------------------------------------------------------------- AUC + CI


@dataclass(frozen=True)
class RocAucResult:
    """AUC with a confidence interval.

    Attributes
    ----------
    auc : float
        Mann-Whitney AUC (ties count one half).
    ci_low, ci_high : float
        Two-sided ``1 - alpha`` interval (clipped to [0, 1]).
    variance : float
        DeLong variance of the AUC (whatever ``method`` built the interval).
    method : str
        ``"delong"`` or ``"bootstrap"``.
    alpha : float
    n_pos, n_neg : int
        Number of cases and controls.
    n_boot : int
        Bootstrap replicates (0 for DeLong).
    """

    auc: float
    ci_low: float
    ci_high: float
    variance: float
    method: str
    alpha: float
    n_pos: int
    n_neg: int
    n_boot: int = 0

    @property
    def se(self) -> float:
        """DeLong standard error, ``sqrt(variance)``."""
        return float(np.sqrt(self.variance))


def roc_auc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve, P(score_case > score_control) + 0.5 P(tie).

    Equals the Mann-Whitney U statistic divided by n_pos * n_neg (Hanley & McNeil 1982).
    """
    y, s = binary_and_scores(y_true, y_score)
    return _placements(s[y == 1], s[y == 0])[0]


def roc_auc_ci(y_true: Any, y_score: Any, *, method: str = "delong", alpha: float = 0.05,
               n_boot: int = 2000, random_state: Any = None) -> RocAucResult:
    """AUC with a ``1 - alpha`` confidence interval.

    Parameters
    ----------
    y_true : array-like of 0/1
        1 = positive (case).
    y_score : array-like of float
        Higher = more likely positive; the direction is never guessed.
    method : {"delong", "bootstrap"}
        ``"delong"``: ``AUC -/+ z_{1-alpha/2} sqrt(V)``, with DeLong's variance
        ``V = s^2(V10)/m + s^2(V01)/n`` from the placement values (DeLong et al. 1988), clipped to
        [0, 1] as in pROC's ``ci.auc(method="delong")``. ``"bootstrap"``: stratified percentile
        bootstrap, cases and controls resampled separately so every replicate keeps m cases and n
        controls (pROC's ``ci.auc(method="bootstrap")``; Carpenter & Bithell 2000).
    alpha : float
        1 - confidence level.
    n_boot : int
        Bootstrap replicates (``method="bootstrap"`` only).
    random_state : None, int or numpy Generator
        Seed of the bootstrap.

    Returns
    -------
    RocAucResult
        ``variance`` is always the DeLong variance.

    Raises
    ------
    InvalidInputError
        Fewer than 2 cases or 2 controls, NaN scores, non-0/1 labels, mismatched lengths.
    """
    alpha = check_alpha(alpha)
    y, s = binary_and_scores(y_true, y_score, min_each=2)
    auc, v10, v01 = _placements(s[y == 1], s[y == 0])
    var = _delong_var(v10, v01)
    if method == "delong":
        half = _z(alpha) * np.sqrt(var)
        lo, hi, nb = auc - half, auc + half, 0
    elif method == "bootstrap":
        nb = check_positive_int(n_boot, "n_boot", minimum=10)
        aucs = _boot_aucs(y, s, nb, random_state)
        lo, hi = np.quantile(aucs, [alpha / 2.0, 1.0 - alpha / 2.0])
    else:
        raise InvalidInputError(f"method must be 'delong' or 'bootstrap', got {method!r}")
    return RocAucResult(auc=auc, ci_low=float(np.clip(lo, 0.0, 1.0)), ci_high=float(np.clip(hi, 0.0, 1.0)),
                        variance=var, method=method, alpha=alpha, n_pos=v10.size, n_neg=v01.size, n_boot=nb)


# --------------------------------------------------------------------------- ROC curve + band


@dataclass(frozen=True)
class RocCurve:
    """Empirical ROC curve; a case is called positive when ``score >= threshold``.

    Attributes
    ----------
    fpr, tpr : ndarray
        From (0, 0) (threshold +inf) to (1, 1) (lowest score), non-decreasing.
    thresholds : ndarray
        Descending; ``thresholds[0]`` is ``+inf``.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]  # last index of each distinct score
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (y.size - y.sum())]
    return fpr, tpr, np.r_[np.inf, s_sorted[last]]


def roc_curve(y_true: Any, y_score: Any) -> RocCurve:
    """Empirical ROC curve at every distinct score (positive when ``score >= threshold``)."""
    y, s = binary_and_scores(y_true, y_score)
    fpr, tpr, thr = _curve(y, s)
    return RocCurve(fpr=_readonly(fpr), tpr=_readonly(tpr), thresholds=_readonly(thr))


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Sensitivity at each false-positive rate of ``grid`` (upper point of vertical steps, linear between)."""
    keep = np.r_[fpr[1:] != fpr[:-1], True]  # last (highest-tpr) point of each distinct fpr
    return np.interp(grid, fpr[keep], tpr[keep])


@dataclass(frozen=True)
class RocBand:
    """Pointwise confidence band of sensitivity over a grid of false-positive rates.

    Attributes
    ----------
    fpr : ndarray
        Grid of 1 - specificity.
    tpr : ndarray
        Observed sensitivity at each grid point.
    tpr_low, tpr_high : ndarray
        Percentile bootstrap limits at each grid point.
    alpha : float
    n_boot : int
    """

    fpr: np.ndarray
    tpr: np.ndarray
    tpr_low: np.ndarray
    tpr_high: np.ndarray
    alpha: float
    n_boot: int


def roc_curve_band(y_true: Any, y_score: Any, *, fpr_grid: Sequence[float] | None = None,
                   alpha: float = 0.05, n_boot: int = 2000, random_state: Any = None) -> RocBand:
    """Pointwise bootstrap band of sensitivity at fixed specificities.

    The band is the stratified percentile bootstrap of the sensitivity at each 1 - specificity of
    ``fpr_grid`` (as pROC's ``ci.se``; Macskassy & Provost 2004 call it vertical averaging). It is a
    pointwise, not a simultaneous, band.

    Parameters
    ----------
    fpr_grid : sequence of float in [0, 1], optional
        Default: 101 points from 0 to 1.
    alpha, n_boot, random_state
        As in :func:`roc_auc_ci`.
    """
    alpha = check_alpha(alpha)
    nb = check_positive_int(n_boot, "n_boot", minimum=10)
    y, s = binary_and_scores(y_true, y_score, min_each=2)
    grid = np.linspace(0.0, 1.0, 101) if fpr_grid is None else as_float(fpr_grid, "fpr_grid")
    if grid.min() < 0 or grid.max() > 1:
        raise InvalidInputError("fpr_grid values must lie in [0, 1]")
    tprs = np.empty((nb, grid.size))
    i = 0
    for rows in _stratified_boot(y, nb, random_state):
        for r in rows:
            tprs[i] = _tpr_at(*_curve(y[r], s[r])[:2], grid)
            i += 1
    lo, hi = np.quantile(tprs, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    obs = _tpr_at(*_curve(y, s)[:2], grid)
    return RocBand(fpr=_readonly(grid), tpr=_readonly(obs), tpr_low=_readonly(lo), tpr_high=_readonly(hi),
                   alpha=alpha, n_boot=nb)


# --------------------------------------------------------------------------- DeLong tests


def delong_covariance(y_true: Any, *scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of k paired scores and their DeLong covariance matrix.

    ``S = S10/m + S01/n`` with ``S10``, ``S01`` the k x k sample covariance matrices of the case
    and control placement values (DeLong et al. 1988, eq. 5; Sun & Xu 2014).

    Returns
    -------
    aucs : ndarray, shape (k,)
    covariance : ndarray, shape (k, k)
    """
    if not scores:
        raise InvalidInputError("delong_covariance needs at least one score array")
    y = as_binary(y_true, "y_true")
    cols = [as_float(sc, f"score #{i + 1}") for i, sc in enumerate(scores)]
    for i, c in enumerate(cols):
        check_same_length(y_true=y, **{f"score #{i + 1}": c})
    binary_and_scores(y, cols[0], min_each=2)  # both classes, at least 2 each
    parts = [_placements(c[y == 1], c[y == 0]) for c in cols]
    aucs = np.array([p[0] for p in parts])
    v10 = np.vstack([p[1] for p in parts])
    v01 = np.vstack([p[2] for p in parts])
    cov = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    return aucs, cov


@dataclass(frozen=True)
class DelongTestResult:
    """Paired DeLong test of two AUCs measured on the same patients.

    Attributes
    ----------
    auc_a, auc_b : float
    covariance : float
        DeLong covariance of the two AUC estimates, ``cov_ab`` (as pROC's ``cov(roc1, roc2)``).
    covariance_matrix : ndarray, shape (2, 2)
        ``[[var_a, cov_ab], [cov_ab, var_b]]``.
    statistic : float
        ``Z = (auc_a - auc_b) / sqrt(var_a + var_b - 2 cov_ab)``.
    p_value : float
        Two-sided, ``2 Phi(-|Z|)``.
    diff, ci_low, ci_high : float
        ``auc_a - auc_b`` and its ``1 - alpha`` Wald interval.
    alpha : float
    """

    auc_a: float
    auc_b: float
    covariance: float
    statistic: float
    p_value: float
    diff: float
    ci_low: float
    ci_high: float
    alpha: float
    covariance_matrix: np.ndarray

    @property
    def var_a(self) -> float:
        return float(self.covariance_matrix[0, 0])

    @property
    def var_b(self) -> float:
        return float(self.covariance_matrix[1, 1])

    @property
    def cov_ab(self) -> float:
        return float(self.covariance_matrix[0, 1])


def delong_test(y_true: Any, score_a: Any, score_b: Any, *, alpha: float = 0.05) -> DelongTestResult:
    """Paired DeLong test: are two AUCs on the same patients equal?

    ``Z = (A_a - A_b) / sqrt(V_a + V_b - 2 C_ab)`` with the DeLong covariance matrix
    (DeLong et al. 1988); two-sided p = ``2 Phi(-|Z|)``. Matches pROC's
    ``roc.test(method="delong", paired=TRUE)``; two identical curves give Z = 0, p = 1 as in pROC.

    Raises
    ------
    InvalidInputError
        Bad input, or a zero variance of the difference with unequal AUCs (Z undefined).
    """
    alpha = check_alpha(alpha)
    aucs, cov = delong_covariance(y_true, score_a, score_b)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    var = max(var, 0.0)  # round-off can make a true 0 slightly negative
    if var <= 1e-15:  # noqa: PLR2004 - round-off floor
        if abs(diff) > 1e-12:
            raise InvalidInputError(
                f"the DeLong variance of the AUC difference is zero while the AUCs differ "
                f"({aucs[0]:.4f} vs {aucs[1]:.4f}); the Z statistic is undefined")
        z, p, var = 0.0, 1.0, 0.0
    else:
        z = diff / np.sqrt(var)
        p = float(2.0 * _st.norm.sf(abs(z)))
    half = _z(alpha) * np.sqrt(var)
    return DelongTestResult(auc_a=float(aucs[0]), auc_b=float(aucs[1]), covariance=float(cov[0, 1]),
                            statistic=float(z), p_value=min(p, 1.0), diff=diff, ci_low=diff - half,
                            ci_high=diff + half, alpha=alpha, covariance_matrix=_readonly(cov))


@dataclass(frozen=True)
class UnpairedDelongResult:
    """Unpaired DeLong comparison of two AUCs from different cohorts.

    Attributes
    ----------
    auc_a, auc_b : float
    var_a, var_b : float
        DeLong variance of each AUC.
    statistic : float
        ``D = (auc_a - auc_b) / sqrt(var_a + var_b)``, referred to a t distribution.
    df : float
        Welch-Satterthwaite degrees of freedom (pROC convention).
    p_value : float
        Two-sided ``2 P(T_df > |D|)``.
    """

    auc_a: float
    auc_b: float
    var_a: float
    var_b: float
    statistic: float
    df: float
    p_value: float


def delong_test_unpaired(y_a: Any, score_a: Any, y_b: Any, score_b: Any) -> UnpairedDelongResult:
    """Compare two AUCs measured on different (independent) cohorts.

    Follows pROC's ``roc.test(roc1, roc2, method="delong", paired=FALSE)`` (pROC
    ``delong.unpaired.test``, version 1.18)::

        D  = (A_a - A_b) / sqrt(V_a + V_b)
        df = (V_a + V_b)^2 / (V_a^2 / (N_a - 1) + V_b^2 / (N_b - 1))
        p  = 2 P(T_df > |D|)

    with ``V`` the DeLong variance of each AUC and ``N`` the total number of patients (cases +
    controls) of each cohort: a Welch-Satterthwaite approximation.

    Raises
    ------
    InvalidInputError
        Bad input in either cohort, or zero variance in both (D undefined).
    """
    ya, sa = binary_and_scores(y_a, score_a, score_name="score_a", min_each=2)
    yb, sb = binary_and_scores(y_b, score_b, score_name="score_b", min_each=2)
    auc_a, *pa = _placements(sa[ya == 1], sa[ya == 0])
    auc_b, *pb = _placements(sb[yb == 1], sb[yb == 0])
    var_a, var_b = _delong_var(*pa), _delong_var(*pb)
    total = var_a + var_b
    if total <= 0.0:
        raise InvalidInputError(
            f"both AUCs have zero DeLong variance (AUCs {auc_a:.4f} and {auc_b:.4f}, e.g. perfect "
            "separation in both cohorts); the unpaired DeLong statistic is undefined")
    d = (auc_a - auc_b) / np.sqrt(total)
    df = total ** 2 / (var_a ** 2 / (ya.size - 1) + var_b ** 2 / (yb.size - 1))
    p = float(2.0 * _st.t.sf(abs(d), df))
    return UnpairedDelongResult(auc_a=auc_a, auc_b=auc_b, var_a=var_a, var_b=var_b, statistic=float(d),
                                df=float(df), p_value=min(p, 1.0))
