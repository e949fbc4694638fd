"""Segmentation evaluation: slice-wise, lesion-wise and voxel-wise, per case and pooled.

Definitions (all on the reference image's grid, slices = axial slices along z):

* **Positive slice** (truth or prediction): a slice whose mask area is at least ``min_area_mm2``
  (default 10 mm^2, about a 3.5 mm disc; ``0`` counts any voxel).
* **Slice-wise sensitivity** = detected truth-positive slices / truth-positive slices, where a truth-positive
  slice is *detected* when the prediction on that same slice is positive and overlaps the truth by >= 1 voxel.
* **Slice-wise PPV** = predicted-positive slices that overlap the truth on that slice / predicted-positive slices.
  This is the study's slice-level reading (a slice is reported positive or not), made stricter by the overlap rule
  so that a false alarm elsewhere on a metastatic slice is not counted as a hit.
* **Lesions** are 3D connected components (26-connectivity). A truth lesion is *detected* when the prediction
  covers at least ``min_overlap`` (default 10 %) of its voxels. A predicted component that touches no truth voxel is
  a *false positive*. Lesion size is the equivalent-sphere diameter ``(6 V / pi)^(1/3)``.
* **Dice** = 2 |P n T| / (|P| + |T|) per case (undefined, reported as ``None``, when both are empty) and pooled over
  all voxels of all cases.

Pooled proportions carry Wilson 95% intervals (slices treated as independent, as in the study) and a
case-level cluster-bootstrap percentile interval that respects the clustering of slices within patients.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.io import check_label_values, mask_on_grid
from oncolabel.lesions import bounding_box, label_components
from oncolabel.transforms import AxisOrientation


@dataclass(frozen=True)
class CaseCounts:
    """Counts of one case (sums of these give the pooled figures)."""

    case_id: str
    truth_slices: int
    detected_slices: int
    predicted_slices: int
    true_predicted_slices: int
    truth_lesions: int
    detected_lesions: int
    truth_lesions_large: int
    detected_lesions_large: int
    false_positive_lesions: int
    intersection: int
    truth_voxels: int
    predicted_voxels: int
    lesion_diameters_mm: tuple[float, ...] = ()
    lesion_detected: tuple[bool, ...] = ()

    @property
    def dice(self) -> float | None:
        denom = self.truth_voxels + self.predicted_voxels
        return None if denom == 0 else 2.0 * self.intersection / denom

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dice"] = self.dice
        d["slice_sensitivity"] = _ratio(self.detected_slices, self.truth_slices)
        d["slice_ppv"] = _ratio(self.true_predicted_slices, self.predicted_slices)
        return d


def _ratio(a: int, b: int) -> float | None:
    return None if b == 0 else a / b


def slice_table(pred: np.ndarray, truth: np.ndarray, *, spacing: Sequence[float],
                min_area_mm2: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice ``(truth_positive, predicted_positive, overlap)`` booleans of ``(z, y, x)`` masks (module rules)."""
    p, t = pred.astype(bool), truth.astype(bool)
    px_mm2 = float(spacing[0]) * float(spacing[1])
    min_px = max(1, int(np.ceil(min_area_mm2 / px_mm2))) if min_area_mm2 > 0 else 1
    return t.sum((1, 2)) >= min_px, p.sum((1, 2)) >= min_px, (p & t).any(axis=(1, 2))


def case_counts(pred: np.ndarray, truth: np.ndarray, *, spacing: Sequence[float], case_id: str = "",
                min_area_mm2: float = 10.0, min_overlap: float = 0.1, large_mm: float = 10.0) -> CaseCounts:
    """Counts for one case from ``(z, y, x)`` binary arrays and the voxel ``spacing`` (x, y, z) in mm."""
    if pred.shape != truth.shape:
        raise InvalidInputError(f"case {case_id}: prediction shape {pred.shape} differs from truth shape {truth.shape}")
    if pred.ndim != 3:
        raise InvalidInputError(f"case {case_id}: expected 3D masks, got shape {pred.shape}")
    p, t = np.asarray(pred).astype(bool, copy=False), np.asarray(truth).astype(bool, copy=False)
    box = bounding_box(p | t)  # every count is zero outside it: slices, components and overlaps
    if box is None:
        box = (slice(0, 0),) * 3
    p, t = p[box], t[box]
    inter = p & t
    t_pos, p_pos, overlap = slice_table(p, t, spacing=spacing, min_area_mm2=min_area_mm2)
    i_area = overlap.astype(int)
    detected_slices = int(np.sum(t_pos & p_pos & (i_area > 0)))
    true_pred_slices = int(np.sum(p_pos & (i_area > 0)))

    voxel_mm3 = float(np.prod(spacing[:3]))
    t_lab, nt = label_components(t)
    p_lab, npred = label_components(p)
    diam, det = [], []
    if nt:
        t_sizes = np.bincount(t_lab.ravel(), minlength=nt + 1)
        covered = np.bincount(t_lab[p].ravel(), minlength=nt + 1)
        for i in range(1, nt + 1):
            diam.append(round(float((6.0 * t_sizes[i] * voxel_mm3 / np.pi) ** (1 / 3)), 2))
            det.append(bool(covered[i] >= min_overlap * t_sizes[i] and covered[i] > 0))
    fp = 0
    if npred:
        touched = np.unique(p_lab[t])
        fp = int(npred - np.count_nonzero(touched))
    large = np.asarray(diam) >= large_mm
    return CaseCounts(case_id=case_id, truth_slices=int(t_pos.sum()), detected_slices=detected_slices,
                      predicted_slices=int(p_pos.sum()), true_predicted_slices=true_pred_slices,
                      truth_lesions=nt, detected_lesions=int(np.sum(det)),
                      truth_lesions_large=int(large.sum()), detected_lesions_large=int(np.sum(np.asarray(det)[large])) if nt else 0,
                      false_positive_lesions=fp, intersection=int(inter.sum()), truth_voxels=int(t.sum()),
                      predicted_voxels=int(p.sum()), lesion_diameters_mm=tuple(diam), lesion_detected=tuple(det))


@dataclass(frozen=True)
class PooledMetric:
    """A pooled proportion with its Wilson interval and case-level cluster-bootstrap interval."""

    value: float | None
    numerator: int
    denominator: int
    wilson_low: float | None
    wilson_high: float | None
    bootstrap_low: float | None
    bootstrap_high: float | None


@dataclass(frozen=True)
class SegmentationEvaluation:
    """Pooled and per-case figures; ``to_dict`` gives the JSON report."""

    cases: tuple[CaseCounts, ...]
    slice_sensitivity: PooledMetric
    slice_ppv: PooledMetric
    lesion_sensitivity: PooledMetric
    lesion_sensitivity_large: PooledMetric
    false_positives_per_scan: float
    dice_pooled: float | None
    dice_mean: float | None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"notice": RESEARCH_USE_ONLY, "settings": dict(self.settings), "n_cases": len(self.cases),
                "pooled": {"slice_sensitivity": asdict(self.slice_sensitivity),
                           "slice_ppv": asdict(self.slice_ppv),
                           "lesion_sensitivity": asdict(self.lesion_sensitivity),
                           "lesion_sensitivity_large": asdict(self.lesion_sensitivity_large),
                           "false_positives_per_scan": self.false_positives_per_scan,
                           "dice_pooled": self.dice_pooled, "dice_mean": self.dice_mean},
                "cases": [c.to_dict() for c in self.cases]}

    def summary(self) -> str:
        f = lambda m: "n/a" if m.value is None else f"{m.value:.3f} [{m.wilson_low:.3f}, {m.wilson_high:.3f}]"  # noqa: E731
        return (f"slice sensitivity {f(self.slice_sensitivity)}, slice PPV {f(self.slice_ppv)}, lesion sensitivity "
                f"{f(self.lesion_sensitivity)} (>= {self.settings.get('large_mm', 10)} mm: "
                f"{f(self.lesion_sensitivity_large)}), FP/scan {self.false_positives_per_scan:.2f}, "
                f"Dice {self.dice_pooled if self.dice_pooled is None else round(self.dice_pooled, 3)}")


def _pooled(cases: Sequence[CaseCounts], num: str, den: str, *, alpha: float, n_boot: int,
            rng: np.random.Generator) -> PooledMetric:
    from oncolabel.stats import wilson_ci

    a = np.array([getattr(c, num) for c in cases], dtype=float)
    b = np.array([getattr(c, den) for c in cases], dtype=float)
    n, d = int(a.sum()), int(b.sum())
    if d == 0:
        return PooledMetric(None, n, d, None, None, None, None)
    lo, hi = wilson_ci(n, d, alpha=alpha)
    idx = rng.integers(0, len(cases), size=(n_boot, len(cases)))
    num_b, den_b = a[idx].sum(1), b[idx].sum(1)
    ok = den_b > 0
    boot = num_b[ok] / den_b[ok]
    blo, bhi = (np.quantile(boot, [alpha / 2, 1 - alpha / 2]) if boot.size else (None, None))
    return PooledMetric(n / d, n, d, float(lo), float(hi),
                        None if blo is None else float(blo), None if bhi is None else float(bhi))


def evaluate_cases(cases: Sequence[CaseCounts], *, alpha: float = 0.05, n_boot: int = 1000,
                   random_state: int | None = 0, settings: Mapping[str, Any] | None = None) -> SegmentationEvaluation:
    """Pool per-case counts into a :class:`SegmentationEvaluation`."""
    if not cases:
        raise InvalidInputError("no cases to evaluate")
    rng = np.random.default_rng(random_state)
    pool = lambda a, b: _pooled(cases, a, b, alpha=alpha, n_boot=n_boot, rng=rng)  # noqa: E731
    inter = sum(c.intersection for c in cases)
    denom = sum(c.truth_voxels + c.predicted_voxels for c in cases)
    dices = [c.dice for c in cases if c.dice is not None]
    return SegmentationEvaluation(
        cases=tuple(cases),
        slice_sensitivity=pool("detected_slices", "truth_slices"),
        slice_ppv=pool("true_predicted_slices", "predicted_slices"),
        lesion_sensitivity=pool("detected_lesions", "truth_lesions"),
        lesion_sensitivity_large=pool("detected_lesions_large", "truth_lesions_large"),
        false_positives_per_scan=float(np.mean([c.false_positive_lesions for c in cases])),
        dice_pooled=None if denom == 0 else 2.0 * inter / denom,
        dice_mean=float(np.mean(dices)) if dices else None,
        settings={"alpha": alpha, "n_boot": n_boot, "random_state": random_state, **(settings or {})})


def grid_case_counts(pred: np.ndarray, truth: np.ndarray, reference: sitk.Image, **kwargs: Any) -> CaseCounts:
    """:func:`case_counts` of two ``(z, y, x)`` masks on ``reference``'s grid, counted on the patient's axes in LPS
    order (:class:`AxisOrientation`): slices are axial whichever way the file stores its axes. The one place the
    evaluation and the trainer's validation turn a grid into slices."""
    orientation = AxisOrientation.of_image(reference)
    p, t = (orientation.to_canonical(np.asarray(a)) for a in (pred, truth))
    return case_counts(p, t, spacing=orientation.spacing_zyx(reference)[::-1], **kwargs)


def evaluate_images(pairs: Sequence[tuple[str, sitk.Image, sitk.Image]], *, min_area_mm2: float = 10.0,
                    min_overlap: float = 0.1, large_mm: float = 10.0, **kwargs: Any) -> SegmentationEvaluation:
    """Evaluate ``(case_id, prediction, truth)`` image pairs (the truth on the prediction's grid, or on a part of it:
    :func:`oncolabel.io.mask_on_grid`). Slices are axial whichever way
    the files store their axes (both arrays are turned into the LPS order, :class:`AxisOrientation`)."""
    counts = []
    for case_id, pred, truth in pairs:
        truth = mask_on_grid(pred, truth, what=f"reference label of case {case_id}")
        for what, img in (("prediction", pred), ("truth", truth)):
            check_label_values(sitk.GetArrayViewFromImage(img), what=f"the {what} of case {case_id}")
        counts.append(grid_case_counts(sitk.GetArrayViewFromImage(pred) > 0, sitk.GetArrayViewFromImage(truth) > 0,
                                       truth, case_id=case_id, min_area_mm2=min_area_mm2, min_overlap=min_overlap,
                                       large_mm=large_mm))
    return evaluate_cases(counts, settings={"min_area_mm2": min_area_mm2, "min_overlap": min_overlap,
                                            "large_mm": large_mm}, **kwargs)
