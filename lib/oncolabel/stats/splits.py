"""Patient-level cross-validation splits: no patient's rows ever sit in two folds.

Several rows (lesions, slices, phases, time points) of one patient are correlated; letting them
straddle the train/test boundary inflates every metric (data leakage). The splitter stratifies on a
patient-level label so each fold keeps about the same prevalence.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

from oncolabel.errors import InvalidInputError
from oncolabel.stats._validation import as_1d, check_positive_int, check_same_length


def _patient_labels(y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patients, row -> patient index, patient label).

    A patient's label is its rows' common label; when binary 0/1 labels differ within a patient the
    patient counts as positive (any positive row).
    """
    patients, inverse = np.unique(groups, return_inverse=True)
    labels, y_idx = np.unique(y, return_inverse=True)
    lo = np.full(patients.size, labels.size)
    hi = np.full(patients.size, -1)
    np.minimum.at(lo, inverse, y_idx)
    np.maximum.at(hi, inverse, y_idx)
    mixed = lo != hi
    if mixed.any() and not set(labels.tolist()) <= {0, 1}:
        raise InvalidInputError(
            f"patient(s) {patients[mixed][:5].tolist()} have rows with different labels; "
            "give one label per patient (only 0/1 labels are merged, as 'any positive')")
    return patients, inverse, labels[hi]


class PatientStratifiedKFold:
    """K-fold splitter at patient level, stratified on the patient label (scikit-learn interface).

    Patients, not rows, are dealt into ``n_splits`` folds, class by class, so that each fold holds
    about ``1/n_splits`` of the positive and of the negative patients; every row of a patient goes to
    the fold of its patient.

    Parameters
    ----------
    n_splits : int, default 5
    shuffle : bool, default True
        Shuffle the patients of each class before dealing them into folds.
    random_state : None, int or numpy Generator
        Seed of the shuffle (the same seed gives the same folds).

    Examples
    --------
    >>> cv = PatientStratifiedKFold(n_splits=3, random_state=0)
    >>> for train, test in cv.split(X, y, groups=patient_ids): ...
    """

    def __init__(self, n_splits: int = 5, *, shuffle: bool = True, random_state: Any = None) -> None:
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n_splits={self.n_splits!r}, shuffle={self.shuffle!r}, "
                f"random_state={self.random_state!r})")

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:  # noqa: N803 - sklearn API
        """Number of folds."""
        return check_positive_int(self.n_splits, "n_splits", minimum=2)

    def split(self, X: Any, y: Any, groups: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # noqa: N803
        """Yield ``(train_rows, test_rows)`` index arrays, one pair per fold.

        Raises
        ------
        InvalidInputError
            Missing ``groups``, mismatched lengths, or fewer patients of a class than folds.
        """
        k = self.get_n_splits()
        if groups is None:
            raise InvalidInputError("groups (one patient id per row) is required for patient-level splits")
        g = as_1d(groups, "groups")
        yy = as_1d(y, "y")
        check_same_length(y=yy, groups=g, **({} if X is None else {"X": np.empty(len(X))}))
        patients, inverse, plabel = _patient_labels(yy, g)
        rng = np.random.default_rng(self.random_state)
        fold_of = np.empty(patients.size, dtype=int)
        offset = 0
        for label in np.unique(plabel):
            members = np.flatnonzero(plabel == label)
            if members.size < k:
                raise InvalidInputError(
                    f"only {members.size} patient(s) with label {label!r}; cannot stratify {k} folds "
                    f"(use n_splits <= {members.size})")
            if self.shuffle:
                members = rng.permutation(members)
            # deal round-robin, continuing where the previous class stopped to balance fold sizes
            fold_of[members] = (np.arange(members.size) + offset) % k
            offset = (offset + members.size) % k
        row_fold = fold_of[inverse]
        for f in range(k):
            yield np.flatnonzero(row_fold != f), np.flatnonzero(row_fold == f)


def check_patient_splits(splits: Iterable[tuple[Any, Any]], groups: Any) -> int:
    """Raise if any patient leaks across a split; return the number of folds checked.

    Checks, for every ``(train, test)`` pair of row indices, that no patient has rows in both, and
    across folds that no patient appears in two test sets.

    Raises
    ------
    InvalidInputError
        Naming the leaking patient(s) and fold.
    """
    g = as_1d(groups, "groups")
    seen_in_test: dict[Any, int] = {}
    n = 0
    for n, (train, test) in enumerate(splits, start=1):
        train_p = set(g[np.asarray(train, dtype=int)].tolist())
        test_p = set(g[np.asarray(test, dtype=int)].tolist())
        both = sorted(train_p & test_p, key=str)
        if both:
            raise InvalidInputError(f"fold {n}: patient(s) {both[:5]} are in both the training and the test set")
        for p in test_p:
            if p in seen_in_test:
                raise InvalidInputError(f"patient {p!r} is in the test sets of folds {seen_in_test[p]} and {n}")
            seen_in_test[p] = n
    if n == 0:
        raise InvalidInputError("no splits to check")
    return n
