"""Patient-level splits and reader-study statistics."""

from __future__ import annotations

import numpy as np
import pytest

from oncolabel.errors import InvalidInputError
from oncolabel.stats import (
    PatientStratifiedKFold,
    check_patient_splits,
    mcnemar_test,
    obuchowski_rockette,
    reader_study,
)


def _lesions(seed: int = 0, n_patients: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-4 rows per patient; a patient's rows share its label."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 5, n_patients)
    groups = np.repeat([f"P{i:02d}" for i in range(n_patients)], per)
    label = rng.random(n_patients) < 0.3
    y = np.repeat(label.astype(int), per)
    return rng.normal(size=(groups.size, 3)), y, groups


# ----------------------------------------------------------------------------- splits


def test_no_patient_in_two_folds_and_every_row_tested_once():
    X, y, groups = _lesions()
    cv = PatientStratifiedKFold(n_splits=5, random_state=0)
    splits = list(cv.split(X, y, groups))
    assert len(splits) == cv.get_n_splits() == 5
    assert check_patient_splits(splits, groups) == 5
    tested = np.concatenate([test for _, test in splits])
    assert np.sort(tested).tolist() == list(range(len(y)))
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])


def test_folds_are_stratified_on_patients():
    X, y, groups = _lesions(1, n_patients=100)
    n_pos = len(set(groups[y == 1]))
    for _, test in PatientStratifiedKFold(n_splits=5, random_state=1).split(X, y, groups):
        pos_patients = len(set(groups[test][y[test] == 1]))
        assert abs(pos_patients - n_pos / 5) <= 1


def test_seeded_and_sklearn_compatible():
    sk = pytest.importorskip("sklearn.model_selection")
    X, y, groups = _lesions(2)
    a = [t.tolist() for _, t in PatientStratifiedKFold(3, random_state=5).split(X, y, groups)]
    b = [t.tolist() for _, t in PatientStratifiedKFold(3, random_state=5).split(X, y, groups)]
    assert a == b
    from sklearn.linear_model import LogisticRegression

    scores = sk.cross_val_score(LogisticRegression(), X, y, groups=groups,
                                cv=PatientStratifiedKFold(3, random_state=0), scoring="accuracy")
    assert scores.shape == (3,)
    assert "n_splits=3" in repr(PatientStratifiedKFold(3))


def test_mixed_labels_within_patient_count_as_positive():
    y = [0, 1, 0, 0, 0, 0, 1, 1]
    groups = ["a", "a", "b", "c", "d", "e", "f", "g"]
    folds = list(PatientStratifiedKFold(2, random_state=0).split(None, y, groups))
    check_patient_splits(folds, groups)
    with pytest.raises(InvalidInputError, match="different labels"):
        list(PatientStratifiedKFold(2).split(None, [0, 2, 1, 1], ["a", "a", "b", "c"]))


def test_split_errors():
    X, y, groups = _lesions()
    with pytest.raises(InvalidInputError, match="groups"):
        list(PatientStratifiedKFold(3).split(X, y, None))
    with pytest.raises(InvalidInputError, match="cannot stratify"):
        list(PatientStratifiedKFold(30).split(X, y, groups))
    with pytest.raises(InvalidInputError, match="same length"):
        list(PatientStratifiedKFold(3).split(X, y[:-1], groups))
    with pytest.raises(InvalidInputError, match="n_splits"):
        PatientStratifiedKFold(1).get_n_splits()


def test_check_detects_leaks():
    groups = np.array(["a", "a", "b", "c"])
    with pytest.raises(InvalidInputError, match="'a'|a"):
        check_patient_splits([([0, 2], [1, 3])], groups)  # patient a in train and test
    with pytest.raises(InvalidInputError, match="test sets of folds 1 and 2"):
        check_patient_splits([([2, 3], [0]), ([2, 3], [1])], groups)


# ----------------------------------------------------------------------------- McNemar


def test_mcnemar_matches_r():
    # R: mcnemar.test(matrix(c(794, 86, 150, 570), nrow = 2)): chi-squared 16.81779661017, p 4.11456228135e-05
    # (Agresti, Categorical Data Analysis: presidential approval, b = 150, c = 86)
    first = [1] * 794 + [1] * 150 + [0] * 86 + [0] * 570
    second = [1] * 794 + [0] * 150 + [1] * 86 + [0] * 570
    res = mcnemar_test(first, second)
    assert (res.b, res.c, res.method) == (150, 86, "chi2")
    assert res.statistic == pytest.approx(16.81779661017, rel=1e-10)
    assert res.p_value == pytest.approx(4.11456228135e-05, rel=1e-9)
    unc = mcnemar_test(first, second, correction=False)
    assert unc.statistic == pytest.approx(64 ** 2 / 236)  # Agresti's 17.36


def test_mcnemar_exact_matches_r_binom_test():
    # R: binom.test(3, 13)$p.value = 0.09228515625; binom.test(5, 12)$p.value = 0.7744140625
    res = mcnemar_test([1] * 3 + [0] * 10, [0] * 3 + [1] * 10)
    assert res.method == "exact" and (res.b, res.c) == (3, 10)
    assert res.p_value == pytest.approx(0.09228515625, rel=1e-12)
    assert mcnemar_test([1] * 7 + [0] * 5, [0] * 7 + [1] * 5).p_value == pytest.approx(0.7744140625)
    assert mcnemar_test([1, 0, 1], [1, 0, 1]).p_value == 1.0  # no discordant pair
    assert mcnemar_test([1] * 30, [0] * 30, exact=True).method == "exact"


# ----------------------------------------------------------------------------- reader study


def _study(seed: int = 0, n: int = 120, readers: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)

    def reads(acc: float) -> np.ndarray:
        right = rng.random((readers, n)) < acc
        return np.where(right, y, 1 - y)

    ai = np.where(rng.random(n) < 0.85, y, 1 - y)
    return y, reads(0.75), reads(0.85), ai


def test_reader_study_structure_and_values():
    y, unaided, aided, ai = _study()
    res = reader_study(y, unaided, aided, ai)
    assert [r.reader for r in res.readers] == ["reader 1", "reader 2", "reader 3", "reader 4"]
    r0 = res.readers[0]
    pos = y == 1
    assert r0.unaided.sensitivity.estimate == pytest.approx(np.mean(unaided[0][pos] == 1))
    assert r0.aided.specificity.estimate == pytest.approx(np.mean(aided[0][~pos] == 0))
    kinds = {(c.measure, c.first, c.second) for c in r0.comparisons}
    assert ("sensitivity", "aided", "unaided") in kinds and ("specificity", "aided", "AI") in kinds
    assert len(r0.comparisons) == 6
    for c in r0.comparisons:
        assert 0 <= c.test.p_value <= 1
    sens = next(c for c in r0.comparisons if c.measure == "sensitivity" and c.second == "unaided")
    assert sens.difference == pytest.approx(r0.aided.sensitivity.estimate - r0.unaided.sensitivity.estimate)
    assert res.pooled["aided"].sensitivity_mean == pytest.approx(
        np.mean([r.aided.sensitivity.estimate for r in res.readers]))
    assert res.pooled["AI"].sensitivity.estimate == pytest.approx(res.ai.sensitivity.estimate)
    m = res.mrmc["sensitivity"]
    assert m.difference == pytest.approx(res.pooled["aided"].sensitivity_mean - res.pooled["unaided"].sensitivity_mean)
    assert m.ci_low < m.difference < m.ci_high and 0 <= m.p_value <= 1 and m.df > 0


def test_reader_study_accepts_mappings_and_scores():
    y, unaided, aided, ai = _study(1, readers=2)
    res = reader_study(y, {"ann": unaided[0], "bob": unaided[1]}, {"ann": aided[0], "bob": aided[1]},
                       ai * 0.6 + 0.2, ai_threshold=0.5)
    assert [r.reader for r in res.readers] == ["ann", "bob"]
    assert res.ai.sensitivity.estimate == pytest.approx(np.mean(ai[y == 1]))
    single = reader_study(y, unaided[:1], aided[:1], ai)
    assert single.mrmc == {"sensitivity": None, "specificity": None}  # MRMC needs >= 2 readers


def test_reader_study_errors():
    y, unaided, aided, ai = _study(2)
    with pytest.raises(InvalidInputError, match="same readers"):
        reader_study(y, {"a": unaided[0]}, {"b": aided[0]}, ai)
    with pytest.raises(InvalidInputError, match="same length"):
        reader_study(y, unaided[:, :-1], aided, ai)
    with pytest.raises(InvalidInputError, match="0/1"):
        reader_study(y, unaided + 1, aided, ai)
    with pytest.raises(InvalidInputError, match="readers x cases"):
        reader_study(y, unaided[0], aided, ai)


def test_obuchowski_rockette_jackknife_equivalence():
    """The closed-form covariances equal the jackknife covariances of Obuchowski & Rockette."""
    rng = np.random.default_rng(4)
    correct = (rng.random((2, 3, 25)) < np.array([0.7, 0.8])[:, None, None]).astype(float)
    res = obuchowski_rockette(correct)
    t, r, m = correct.shape
    theta = correct.mean(axis=2).reshape(-1)
    jk = np.array([np.delete(correct, k, axis=2).mean(axis=2).reshape(-1) for k in range(m)])
    cov = (m - 1) / m * (jk - jk.mean(axis=0)).T @ (jk - jk.mean(axis=0))
    mod, rdr = np.repeat([0, 1], r), np.tile(np.arange(r), 2)
    cov2 = cov[(mod[:, None] == mod) & (rdr[:, None] != rdr)].mean()
    cov3 = cov[(mod[:, None] != mod) & (rdr[:, None] != rdr)].mean()
    th = theta.reshape(t, r)
    ms_t = r * np.sum((th.mean(1) - th.mean()) ** 2)
    ms_tr = np.sum((th - th.mean(1, keepdims=True) - th.mean(0, keepdims=True) + th.mean()) ** 2) / (r - 1)
    den = ms_tr + r * max(cov2 - cov3, 0)
    assert res.statistic == pytest.approx(ms_t / den)
    assert res.df == pytest.approx(den ** 2 / ms_tr ** 2 * (r - 1))
    with pytest.raises(InvalidInputError, match="shape"):
        obuchowski_rockette(correct[0])
