"""Lesion candidates after segmentation: features of each predicted component, a false-positive filter, and
growth into the adjacent slices.

The segmentation network's thresholded output (:func:`candidate_mask`) is a set of 3D connected components. Two
optional steps act on them (both measured on held-out phantoms: docs/bone_metastasis.md, and
``bench/bone_metastasis_candidates.py``):

* :class:`ComponentFilter` - a logistic regression on :data:`COMPONENT_FEATURES` (network confidence, size, shape,
  CT attenuation inside and around the component) that scores each component as metastasis vs false positive
  (bone islands, degenerative sclerosis, haemangiomas, ...); components scoring below its threshold are dropped.
  It is fitted on a model's own predictions for labelled cases it never trained on, and stored in that model's
  checkpoint (plain numbers, no pickled objects).
* :func:`grow_along_z` - the network under-segments the first and last slices of a lesion (partial volume);
  each kept component is extended into the adjacent slices, inside its own in-plane footprint, where the CT
  attenuation lies within the component's own interquartile HU range.

Arrays are ``(z, y, x)``; spacings are ``(z, y, x)`` in mm.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from oncolabel.errors import CheckpointError, InvalidInputError
from oncolabel.lesions import components_with_seeds, label_components, remove_small_components

__all__ = ["COMPONENT_FEATURES", "RING_MM", "ComponentFilter", "candidate_mask", "component_features",
           "component_table", "fit_component_filter", "grow_along_z", "out_of_fold_scores"]

#: one row per component, in this order (the filter stored in a checkpoint records these names and is only
#: applied when they match)
COMPONENT_FEATURES: tuple[str, ...] = (
    "log_volume_mm3", "prob_max", "prob_mean", "prob_q90",
    "hu_mean", "hu_sd", "hu_q10", "hu_q90", "hu_q01", "hu_q99",
    "ring_hu_mean", "ring_hu_sd", "ring_bone_fraction", "ring_soft_fraction", "contrast_to_ring",
    "core_minus_rim_hu", "edge_gradient",
    "major_axis_mm", "elongation", "flatness", "z_extent_mm", "n_slices",
    "frac_hu_over_1000", "frac_hu_under_150",
    "frac_fat", "frac_soft", "frac_cancellous", "frac_sclerotic", "frac_dense", "frac_very_dense",
    "neighbourhood_hu_q99", "neighbourhood_fat_fraction", "z_autocorrelation",
)


#: width (mm) of the shell around a component whose attenuation the features describe; callers that crop a volume
#: before computing features widen their crop by at least this
RING_MM: float = 3.0


def candidate_mask(prob: np.ndarray, *, threshold: float, seed_threshold: float, min_voxels: int) -> np.ndarray:
    """Threshold ``prob``; keep components reaching ``seed_threshold`` (when above ``threshold``) and of at least
    ``min_voxels`` voxels."""
    mask = prob >= threshold
    if seed_threshold > threshold:
        mask = components_with_seeds(mask, prob >= seed_threshold)
    return remove_small_components(mask, max(1, int(min_voxels)))


def _box(sl: tuple[slice, ...], pad: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - q), min(n, s.stop + q)) for s, q, n in zip(sl, pad, shape))


def component_features(prob: np.ndarray, hu: np.ndarray, labels: np.ndarray, spacing_zyx: Sequence[float], *,
                       ring_mm: float = RING_MM) -> np.ndarray:
    """Feature rows (:data:`COMPONENT_FEATURES`) of the components ``1..labels.max()`` of ``labels``.

    Every component is measured on its own bounding box, widened by ``ring_mm``: the ring is the shell of up to
    ``ring_mm`` around the component (other components excluded), the rim its outer 1.5 pixels, the neighbourhood
    the component widened by 2 mm. Returns an array of shape ``(n_components, len(COMPONENT_FEATURES))``.
    """
    if not (prob.shape == hu.shape == labels.shape) or labels.ndim != 3:
        raise InvalidInputError(f"probability {prob.shape}, CT {hu.shape} and components {labels.shape} must be "
                                "the same 3D shape")
    sz = np.asarray(spacing_zyx, dtype=float)
    pad = (np.ceil(ring_mm / sz) + 1).astype(int)
    vox = float(np.prod(sz))
    rows = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            raise InvalidInputError(f"component labels are not consecutive: {i} is missing")
        box = _box(sl, pad, labels.shape)
        lab = labels[box]
        m = lab == i
        h = hu[box].astype(np.float32)
        p = prob[box].astype(np.float32)
        hv, pv = h[m], p[m]
        outside = ndimage.distance_transform_edt(~m, sampling=sz)
        ring = (outside > 0) & (outside <= ring_mm) & (lab == 0)
        rv = h[ring] if ring.any() else hv
        inside = ndimage.distance_transform_edt(m, sampling=sz)
        rim = m & (inside <= 1.5 * sz[1:].max())
        core = m & ~rim
        core_mean = float(h[core].mean()) if core.any() else float(hv.mean())
        rim_mean = float(h[rim].mean()) if rim.any() else float(hv.mean())
        grad = np.sqrt(sum(g ** 2 for g in np.gradient(h, *sz))) if min(h.shape) > 1 else np.zeros_like(h)
        edge = m & ~ndimage.binary_erosion(m)
        pts = np.argwhere(m) * sz
        if len(pts) >= 3:
            axes = np.sqrt(np.sort(np.linalg.eigvalsh(np.cov(pts.T)))[::-1].clip(1e-6))
        else:
            axes = np.ones(3)
        both = m[:-1] & m[1:]
        a, b = h[:-1][both], h[1:][both]
        zcorr = float(np.corrcoef(a, b)[0, 1]) if a.size > 5 and a.std() > 0 and b.std() > 0 else 0.0
        nb = h[outside <= 2.0]
        n_slices = int(np.count_nonzero(m.any(axis=(1, 2))))
        q = np.quantile(hv, [0.01, 0.1, 0.9, 0.99])
        rows.append([
            np.log(m.sum() * vox), pv.max(), pv.mean(), np.quantile(pv, 0.9),
            hv.mean(), hv.std(), q[1], q[2], q[0], q[3],
            rv.mean(), rv.std(), (rv >= 200).mean(), ((rv > -150) & (rv < 150)).mean(), hv.mean() - rv.mean(),
            core_mean - rim_mean, grad[edge].mean(),
            axes[0], axes[1] / axes[0], axes[2] / axes[0], n_slices * sz[0], n_slices,
            (hv > 1000).mean(), (hv < 150).mean(),
            (hv < -30).mean(), ((hv >= -30) & (hv < 120)).mean(), ((hv >= 120) & (hv < 350)).mean(),
            ((hv >= 350) & (hv < 700)).mean(), ((hv >= 700) & (hv < 1100)).mean(), (hv >= 1100).mean(),
            np.quantile(nb, 0.99), (nb < -30).mean(), zcorr,
        ])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(COMPONENT_FEATURES))


def component_table(prob: np.ndarray, hu: np.ndarray, labels: np.ndarray, truth: np.ndarray,
                    spacing_zyx: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Features of the components ``1..n`` of ``labels`` and their class: 1 when a component touches the truth
    (the evaluation's true-positive rule), 0 for a false positive. What :func:`fit_component_filter` learns from."""
    X = component_features(prob, hu, labels, spacing_zyx)
    hits = np.bincount(labels[np.asarray(truth, dtype=bool)], minlength=len(X) + 1)[1:]
    return X, (hits > 0).astype(np.int64)


class ComponentFilter:
    """P(component is a metastasis) from :data:`COMPONENT_FEATURES`: L2-regularised logistic regression on
    standardised features (scikit-learn estimator conventions: parameters in ``__init__``, fitted attributes
    end in ``_``).

    Args:
        C: inverse regularisation strength.
        threshold: components with a probability below it are dropped by :meth:`keep`.
    """

    def __init__(self, C: float = 0.3, threshold: float = 0.15) -> None:
        self.C = C
        self.threshold = threshold

    def fit(self, X: np.ndarray, y: np.ndarray) -> "ComponentFilter":
        from sklearn.linear_model import LogisticRegression

        X, y = self._check(X), np.asarray(y).astype(int)
        if len(y) != len(X):
            raise InvalidInputError(f"{len(X)} feature rows but {len(y)} labels")
        if len(np.unique(y)) < 2:
            raise InvalidInputError("the component filter needs both true and false-positive components to fit")
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        lr = LogisticRegression(C=self.C, max_iter=5000).fit((X - self.mean_) / self.scale_, y)
        self.coef_, self.intercept_ = lr.coef_[0].astype(float), float(lr.intercept_[0])
        self.n_train_ = int(len(y))
        return self

    @staticmethod
    def _check(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(COMPONENT_FEATURES):
            raise InvalidInputError(f"component features must be (n, {len(COMPONENT_FEATURES)}), got {X.shape}")
        if not np.isfinite(X).all():
            raise InvalidInputError("component features contain NaN or infinite values")
        return X

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, 2)``: P(false positive), P(metastasis)."""
        if not hasattr(self, "coef_"):
            raise InvalidInputError("the component filter is not fitted")
        z = ((self._check(X) - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        p = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - p, p])

    def keep(self, X: np.ndarray) -> np.ndarray:
        """Boolean per component: probability of metastasis >= ``threshold``."""
        if len(X) == 0:
            return np.zeros(0, dtype=bool)
        return self.predict_proba(X)[:, 1] >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (stored inside a checkpoint)."""
        return {"kind": "logistic_regression", "features": list(COMPONENT_FEATURES), "C": self.C,
                "threshold": self.threshold, "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
                "coef": self.coef_.tolist(), "intercept": self.intercept_, "n_train": self.n_train_}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ComponentFilter":
        """Inverse of :meth:`to_dict`.

        Raises:
            CheckpointError: another kind of filter, or one fitted on another feature list.
        """
        if d.get("kind") != "logistic_regression":
            raise CheckpointError(f"unknown component filter kind {d.get('kind')!r}")
        if tuple(d.get("features", ())) != COMPONENT_FEATURES:
            raise CheckpointError("the stored component filter was fitted on another feature list than this "
                                  "version computes; refit it (oncolabel fit-filter)")
        f = cls(C=float(d["C"]), threshold=float(d["threshold"]))
        f.mean_, f.scale_ = np.asarray(d["mean"], float), np.asarray(d["scale"], float)
        f.coef_, f.intercept_ = np.asarray(d["coef"], float), float(d["intercept"])
        f.n_train_ = int(d.get("n_train", 0))
        return f


def grow_along_z(mask: np.ndarray, hu: np.ndarray, *, steps: int = 1,
                 quantiles: tuple[float, float] = (25.0, 75.0)) -> np.ndarray:
    """Extend each component of ``mask`` by up to ``steps`` slices above and below.

    A voxel of an adjacent slice is added when it lies under the component's footprint on the neighbouring slice
    and its HU is within the component's own ``quantiles`` (percentiles) of HU. Returns a new mask; components
    never shrink.
    """
    if mask.shape != hu.shape:
        raise InvalidInputError(f"mask {mask.shape} and CT {hu.shape} differ in shape")
    out = mask.copy()
    if steps < 1 or not mask.any():
        return out
    labels, _ = label_components(mask)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        box = _box(sl, (steps, 0, 0), mask.shape)
        m = labels[box] == i
        h = hu[box]
        lo, hi = np.percentile(h[m], quantiles)
        similar = (h >= lo) & (h <= hi)
        grown = m.copy()
        for _ in range(steps):
            below = np.zeros_like(grown)
            below[1:] = grown[:-1]
            above = np.zeros_like(grown)
            above[:-1] = grown[1:]
            grown |= (below | above) & similar
        out[box] |= grown
    return out


def _stack(tables: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All components of per-case tables: features, classes and the case index of each."""
    if not tables:
        return np.zeros((0, len(COMPONENT_FEATURES))), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (np.vstack([t[0] for t in tables]), np.concatenate([t[1] for t in tables]).astype(np.int64),
            np.concatenate([np.full(len(t[1]), k, dtype=np.int64) for k, t in enumerate(tables)]))


def _case_groups(n_cases: int, patients: Sequence[Any] | None) -> np.ndarray:
    """One group index per case: its patient's (cases of one patient share it), or its own when none is given."""
    if patients is None:
        return np.arange(n_cases)
    if len(patients) != n_cases:
        raise InvalidInputError(f"{len(patients)} patient ids for {n_cases} cases")
    keys = [("patient", p) if p is not None else ("case", k) for k, p in enumerate(patients)]
    index = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    return np.asarray([index[key] for key in keys])


def out_of_fold_scores(tables: Sequence[tuple[np.ndarray, np.ndarray]], *, C: float = 0.3, folds: int = 5,
                       seed: int = 0, patients: Sequence[Any] | None = None) -> np.ndarray:
    """Each component's P(metastasis) from a :class:`ComponentFilter` fitted without its case (and without the
    other cases of its patient, when ``patients`` gives one id per case; ``None`` entries are patients of their own).

    Patients (not components) are split into ``folds`` (fewer when there are fewer patients), in an order shuffled
    with ``seed``; a fold whose training part lacks one of the classes leaves its components NaN (not scored).
    Returns one array over all components, in table order.
    """
    from sklearn.model_selection import GroupKFold

    X, y, cases = _stack(tables)
    case_groups = _case_groups(len(tables), patients)
    groups = case_groups[cases]
    oof = np.full(len(y), np.nan)
    k = min(folds, len(np.unique(groups)))
    if k < 2:
        return oof
    # GroupKFold is deterministic: shuffle the groups (one per case without patient ids: the same folds as before)
    perm = np.random.default_rng(seed).permutation(int(case_groups.max()) + 1)
    for tr, te in GroupKFold(k).split(X, y, perm[groups]):
        if len(np.unique(y[tr])) == 2:
            oof[te] = ComponentFilter(C=C).fit(X[tr], y[tr]).predict_proba(X[te])[:, 1]
    return oof


def fit_component_filter(tables: Iterable[tuple[np.ndarray, np.ndarray]], *, C: float = 0.3,
                         threshold: float = 0.15, folds: int = 5, seed: int = 0,
                         patients: Sequence[Any] | None = None) -> tuple[ComponentFilter, dict]:
    """Fit a :class:`ComponentFilter` on per-case ``(X, y)`` tables; report its patient-grouped cross-validated AUC
    (:func:`out_of_fold_scores`: no case, and no patient when ``patients`` names them, on both sides of a fold)."""
    from oncolabel.stats import roc_auc

    tables = list(tables)
    X, y, groups = _stack(tables)
    if len(y) == 0 or len(np.unique(y)) < 2:
        raise InvalidInputError("the cohorts gave no mix of true and false-positive components to fit a filter on")
    oof = out_of_fold_scores(tables, C=C, folds=folds, seed=seed, patients=patients)
    done = ~np.isnan(oof)
    true, false = done & (y == 1), done & (y == 0)
    report = {"n_cases": len(tables), "n_components": int(len(y)), "n_true": int(y.sum()),
              "folds": min(folds, len(np.unique(_case_groups(len(tables), patients)[groups]))), "seed": seed,
              "cv_auc": float(roc_auc(y[done], oof[done])) if true.any() and false.any() else None,
              "cv_kept_true": float((oof[true] >= threshold).mean()) if true.any() else None,
              "cv_kept_false": float((oof[false] >= threshold).mean()) if false.any() else None}
    return ComponentFilter(C=C, threshold=threshold).fit(X, y), report
