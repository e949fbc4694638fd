"""Reader studies: each reader alone, the same reader with AI, and the AI alone.

Every reader reads every case twice (without and with the AI's output); the AI reads every case
once. Comparisons are paired on cases, so per reader they use McNemar's test on the discordant
cases; across readers the Obuchowski-Rockette model treats readers and cases as random.

References
----------
McNemar Q. Note on the sampling error of the difference between correlated proportions or
percentages. Psychometrika 1947;12:153-157.
Edwards AL. Note on the "correction for continuity" in testing the significance of the difference
between correlated proportions. Psychometrika 1948;13:185-187.
Obuchowski NA, Rockette HE. Hypothesis testing of diagnostic accuracy for multiple readers and
multiple tests: an ANOVA approach with dependent observations. Commun Stat Simul Comput
1995;24:285-308.
Hillis SL. A comparison of denominator degrees of freedom methods for multiple observer ROC
analysis. Stat Med 2007;26:596-619.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as _st

from oncolabel.errors import InvalidInputError
from oncolabel.stats._validation import as_binary, check_alpha, check_both_classes, check_same_length
from oncolabel.stats.diagnostic import DiagnosticResult, ProportionCI, diagnostic_metrics, proportion_ci

_EXACT_BELOW = 25  # discordant pairs under which McNemar's test is exact (binomial)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar test of paired binary outcomes.

    Attributes
    ----------
    b, c : int
        Discordant counts: ``b`` = first 1 / second 0, ``c`` = first 0 / second 1.
    statistic : float
        Exact test: ``min(b, c)``; otherwise the chi-square ``(|b - c| - 1)^2 / (b + c)``
        (``(b - c)^2 / (b + c)`` without continuity correction).
    p_value : float
        Two-sided.
    method : str
        ``"exact"`` or ``"chi2"`` / ``"chi2-uncorrected"``.
    """

    b: int
    c: int
    statistic: float
    p_value: float
    method: str


def mcnemar_test(first: Any, second: Any, *, exact: bool | None = None, correction: bool = True) -> McNemarResult:
    """McNemar's test that two paired binary outcomes have the same rate (McNemar 1947).

    Only the discordant pairs count. With ``exact`` (default: when ``b + c < 25``) the two-sided
    p-value is the binomial ``min(1, 2 P(X <= min(b, c)))``, ``X ~ Bin(b + c, 1/2)``; otherwise the
    chi-square statistic on 1 df, with Edwards' (1948) continuity correction by default (as R's
    ``mcnemar.test``). No discordant pair gives statistic 0 and p = 1.

    Parameters
    ----------
    first, second : array-like of 0/1
        Paired outcomes (e.g. "correct call" by the same reader without and with AI).
    """
    x = as_binary(first, "first")
    y = as_binary(second, "second")
    check_same_length(first=x, second=y)
    b, c = int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))
    n = b + c
    if exact is None:
        exact = n < _EXACT_BELOW
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0, "exact" if exact else "chi2")
    if exact:
        k = min(b, c)
        return McNemarResult(b, c, float(k), float(min(1.0, 2.0 * _st.binom.cdf(k, n, 0.5))), "exact")
    stat = (max(abs(b - c) - 1, 0) if correction else abs(b - c)) ** 2 / n
    return McNemarResult(b, c, float(stat), float(_st.chi2.sf(stat, 1)),
                         "chi2" if correction else "chi2-uncorrected")


@dataclass(frozen=True)
class PairedComparison:
    """One measure (sensitivity or specificity) compared between two reading conditions."""

    measure: str
    first: str
    second: str
    estimate_first: float
    estimate_second: float
    test: McNemarResult

    @property
    def difference(self) -> float:
        """``estimate_first - estimate_second``."""
        return self.estimate_first - self.estimate_second


@dataclass(frozen=True)
class ReaderResult:
    """One reader: accuracy alone and with AI, and paired comparisons.

    ``comparisons`` holds, for sensitivity (on the positive cases) and specificity (on the negative
    cases): with AI vs alone, with AI vs the AI, alone vs the AI.
    """

    reader: str
    unaided: DiagnosticResult
    aided: DiagnosticResult
    comparisons: tuple[PairedComparison, ...]


@dataclass(frozen=True)
class PooledEstimate:
    """Accuracy of a reading condition over all readers.

    ``sensitivity_mean`` / ``specificity_mean`` average the readers' values (the reader-averaged
    figure of merit of MRMC analysis). ``sensitivity`` / ``specificity`` pool every read into one
    proportion; their Wilson intervals treat reads as independent and so are too narrow when
    readers agree: use :class:`MrmcResult` for inference across readers.
    """

    condition: str
    sensitivity_mean: float
    specificity_mean: float
    sensitivity: ProportionCI
    specificity: ProportionCI


@dataclass(frozen=True)
class MrmcResult:
    """Obuchowski-Rockette comparison of aided vs unaided reading (random readers and cases).

    Attributes
    ----------
    measure : str
    aided, unaided, difference : float
        Reader-averaged figures of merit and ``aided - unaided``.
    ci_low, ci_high : float
        ``1 - alpha`` interval of the difference.
    statistic : float
        F statistic on (1, ``df``) degrees of freedom.
    df : float
        Hillis (2007) denominator degrees of freedom.
    p_value : float
    """

    measure: str
    aided: float
    unaided: float
    difference: float
    ci_low: float
    ci_high: float
    statistic: float
    df: float
    p_value: float


@dataclass(frozen=True)
class ReaderStudyResult:
    """Everything :func:`reader_study` computes."""

    readers: tuple[ReaderResult, ...]
    ai: DiagnosticResult
    pooled: dict[str, PooledEstimate]
    mrmc: dict[str, MrmcResult | None]
    alpha: float


def obuchowski_rockette(correct: Any, *, alpha: float = 0.05, measure: str = "accuracy") -> MrmcResult | None:
    """Obuchowski-Rockette (1995) test of two modalities read by the same readers on the same cases.

    ``correct[i, j, k]`` is 1 when reader j in modality i (0 = unaided, 1 = aided) was right on case
    k; the figure of merit ``theta_ij`` is its mean over cases (sensitivity when the cases are the
    positives, specificity when they are the negatives). With t = 2 modalities and r readers::

        MS_T  = r sum_i (theta_i. - theta_..)^2 / (t - 1)
        MS_TR = sum_ij (theta_ij - theta_i. - theta_.j + theta_..)^2 / ((t - 1)(r - 1))
        F     = MS_T / (MS_TR + r max(Cov2 - Cov3, 0))
        ddf   = (MS_TR + r max(Cov2 - Cov3, 0))^2 / (MS_TR^2 / ((t - 1)(r - 1)))

    (Hillis 2007), where Cov2 / Cov3 are the mean case-sampling covariances of figures of merit of
    different readers in the same / different modality. For a mean over cases the jackknife
    covariance equals the sample covariance of the case-level values divided by the number of cases,
    which is used here. CI of the difference: ``+/- t_{1-alpha/2, ddf} sqrt(2/r (MS_TR + r max(Cov2 -
    Cov3, 0)))``.

    Returns
    -------
    MrmcResult or None
        ``None`` when undefined: fewer than 2 readers or 2 cases, or a zero denominator (no
        variation between readers or cases).
    """
    a = check_alpha(alpha)
    x = np.asarray(correct, dtype=float)
    if x.ndim != 3 or x.shape[0] != 2:
        raise InvalidInputError(f"correct must have shape (2, readers, cases), got {x.shape}")
    _, r, m = x.shape
    if r < 2 or m < 2:
        return None
    theta = x.mean(axis=2)
    cov = np.cov(x.reshape(2 * r, m)) / m  # rows: (modality, reader)
    mod = np.repeat([0, 1], r)
    rdr = np.tile(np.arange(r), 2)
    same_mod, same_rdr = mod[:, None] == mod[None, :], rdr[:, None] == rdr[None, :]
    cov2 = cov[same_mod & ~same_rdr].mean()
    cov3 = cov[~same_mod & ~same_rdr].mean()
    ms_t = r * np.sum((theta.mean(axis=1) - theta.mean()) ** 2)
    resid = theta - theta.mean(axis=1, keepdims=True) - theta.mean(axis=0, keepdims=True) + theta.mean()
    ms_tr = np.sum(resid ** 2) / (r - 1)
    denom = ms_tr + r * max(cov2 - cov3, 0.0)
    if denom <= 1e-15 or ms_tr <= 1e-15:
        return None
    f = ms_t / denom
    ddf = denom ** 2 / (ms_tr ** 2 / (r - 1))
    diff = float(theta[1].mean() - theta[0].mean())
    half = float(_st.t.ppf(1 - a / 2, ddf) * np.sqrt(2.0 / r * denom))
    return MrmcResult(measure=measure, aided=float(theta[1].mean()), unaided=float(theta[0].mean()),
                      difference=diff, ci_low=diff - half, ci_high=diff + half, statistic=float(f),
                      df=float(ddf), p_value=float(_st.f.sf(f, 1, ddf)))


def _reads(calls: Any, name: str, n_cases: int, readers: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    """(reader names, readers x cases 0/1 matrix) from a mapping or a 2-D array."""
    if isinstance(calls, Mapping):
        names = [str(k) for k in calls]
        rows = [as_binary(v, f"{name}[{k!r}]") for k, v in calls.items()]
    else:
        arr = np.asarray(calls)
        if arr.ndim != 2:
            raise InvalidInputError(f"{name} must be a readers x cases array or a mapping reader -> calls, "
                                    f"got shape {arr.shape}")
        rows = [as_binary(row, f"{name}[{i}]") for i, row in enumerate(arr)]
        names = list(readers) if readers is not None else [f"reader {i + 1}" for i in range(len(rows))]
    if not rows:
        raise InvalidInputError(f"{name} has no reader")
    if len(names) != len(rows):
        raise InvalidInputError(f"{len(names)} reader names for {len(rows)} readers in {name}")
    for nm, row in zip(names, rows):
        check_same_length(y_true=np.empty(n_cases), **{f"{name}[{nm!r}]": row})
    return names, np.vstack(rows)


def _compare(y: np.ndarray, a: np.ndarray, b: np.ndarray, names: tuple[str, str],
             exact: bool | None) -> list[PairedComparison]:
    out = []
    for measure, cls in (("sensitivity", 1), ("specificity", 0)):
        sel = y == cls
        ca, cb = (a[sel] == cls).astype(int), (b[sel] == cls).astype(int)
        out.append(PairedComparison(measure, names[0], names[1], float(ca.mean()), float(cb.mean()),
                                    mcnemar_test(ca, cb, exact=exact)))
    return out


def _pooled(condition: str, y: np.ndarray, reads: np.ndarray, alpha: float) -> PooledEstimate:
    pos, neg = reads[:, y == 1] == 1, reads[:, y == 0] == 0
    return PooledEstimate(condition=condition, sensitivity_mean=float(pos.mean(axis=1).mean()),
                          specificity_mean=float(neg.mean(axis=1).mean()),
                          sensitivity=proportion_ci(int(pos.sum()), pos.size, alpha=alpha),
                          specificity=proportion_ci(int(neg.sum()), neg.size, alpha=alpha))


def reader_study(y_true: Any, unaided: Any, aided: Any, ai: Any, *, readers: Sequence[str] | None = None,
                 ai_threshold: float | None = None, alpha: float = 0.05,
                 exact: bool | None = None) -> ReaderStudyResult:
    """Compare each reader alone, the same reader with AI, and the AI alone.

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n_cases,)
    unaided, aided : mapping reader -> 0/1 calls, or array (n_readers, n_cases)
        Each reader's calls without and with the AI, same readers in the same order.
    ai : array-like, shape (n_cases,)
        The AI's 0/1 calls, or scores with ``ai_threshold`` (positive when ``score >= threshold``).
    readers : sequence of str, optional
        Reader names when the calls are arrays.
    alpha : float
    exact : bool, optional
        Force the exact or chi-square McNemar test (default: exact below 25 discordant cases).

    Returns
    -------
    ReaderStudyResult
        Per reader: sensitivity/specificity with Wilson CIs and McNemar tests (aided vs unaided,
        aided vs AI, unaided vs AI); pooled estimates per condition; Obuchowski-Rockette MRMC tests
        of aided vs unaided sensitivity and specificity (``None`` with fewer than 2 readers).
    """
    a = check_alpha(alpha)
    y = as_binary(y_true, "y_true")
    check_both_classes(y)
    names_u, reads_u = _reads(unaided, "unaided", y.size, readers)
    names_a, reads_a = _reads(aided, "aided", y.size, readers)
    if names_u != names_a:
        raise InvalidInputError(f"unaided and aided reads must come from the same readers, got {names_u} "
                                f"and {names_a}")
    ai_res = diagnostic_metrics(y, ai, threshold=ai_threshold, alpha=a)
    ai_calls = as_binary(ai, "ai") if ai_threshold is None else (np.asarray(ai, dtype=float) >= ai_threshold)
    ai_calls = ai_calls.astype(int)
    per_reader = []
    for name, ru, ra in zip(names_u, reads_u, reads_a):
        comps = (_compare(y, ra, ru, ("aided", "unaided"), exact) + _compare(y, ra, ai_calls, ("aided", "AI"), exact)
                 + _compare(y, ru, ai_calls, ("unaided", "AI"), exact))
        per_reader.append(ReaderResult(reader=name, unaided=diagnostic_metrics(y, ru, alpha=a),
                                       aided=diagnostic_metrics(y, ra, alpha=a), comparisons=tuple(comps)))
    pooled = {c: _pooled(c, y, r, a) for c, r in (("unaided", reads_u), ("aided", reads_a))}
    pooled["AI"] = _pooled("AI", y, ai_calls[None, :], a)
    mrmc = {}
    for measure, cls in (("sensitivity", 1), ("specificity", 0)):
        sel = y == cls
        correct = np.stack([reads_u[:, sel] == cls, reads_a[:, sel] == cls]).astype(float)
        mrmc[measure] = obuchowski_rockette(correct, alpha=a, measure=measure)
    return ReaderStudyResult(readers=tuple(per_reader), ai=ai_res, pooled=pooled, mrmc=mrmc, alpha=a)
