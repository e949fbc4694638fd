"""The RDP score: calibrated risk of lymph-node metastasis of non-functional PanNET, and what it suggests.

A frozen :class:`RdpModel` is the task's CNN(s) (deep feature ``deep:logit``: the mean log-odds of the cross-fitted
CNNs; the first CNN's pooled activations ``deep:<k>`` are available too) plus a linear *head* taken from a fitted
``combined`` glmBoost pipeline (:func:`oncolabel.scoring.models.model_pipeline`)::

    lp    = intercept + sum_j coef_j (x_j - mean_j) / scale_j        (log-odds, selected features only)
    score = expit(a + b lp)                                            (Platt recalibration on out-of-fold lp)
    risk  = "high" if score >= threshold else "low"                   (threshold: Youden on out-of-fold scores)

and the study's rule (Platt JC. Probabilistic outputs for support vector machines, 1999; Youden WJ. Cancer
1950;3:32)::

    size <= 2 cm: low -> follow-up or minimal (parenchyma-sparing) enucleation; high -> standard resection
    size  > 2 cm: low -> enucleation;                                  high -> standard resection

with lymphadenectomy. Every output carries the research-use-only notice.

File format: an OncoLabel checkpoint (:mod:`oncolabel.checkpoint`; loaded with ``weights_only=True``) whose
network and ``state_dict`` are the CNN(s) (keys prefixed ``m<k>.`` when there are several), whose ``preprocessing``
is the task's (CNN input and radiomics settings) and whose ``training["rdp_head"]`` holds the head above, so the
model store publishes it like any checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import SimpleITK as sitk
import torch

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from oncolabel.errors import CheckpointError, InvalidInputError
from oncolabel.features.deep import DEEP_PREFIX, LOGIT_COLUMN, models_from_checkpoint
from oncolabel.features.radiomics import extract_radiomics_with_provenance
from oncolabel.features.selection import RAD_PREFIX
from oncolabel.provenance import package_versions
from oncolabel.tasks import TaskSpec, get_task
from oncolabel.tasks.pannet_ln import read_case

__all__ = ["RdpHead", "RdpModel", "RdpResult", "recommendation", "SIZE_CUTOFF_CM", "TASK"]

TASK = "pannet_ln"
SIZE_CUTOFF_CM = 2.0
SIZE_FEATURE = "original_shape_Maximum3DDiameter"

_RULES = {
    ("small", "low"): "follow-up (surveillance) or minimal enucleation",
    ("small", "high"): "standard oncological resection with lymphadenectomy",
    ("large", "low"): "enucleation (parenchyma-sparing)",
    ("large", "high"): "standard oncological resection with lymphadenectomy",
}


def recommendation(risk_group: str, size_cm: float, *, cutoff_cm: float = SIZE_CUTOFF_CM) -> str:
    """The study's suggestion for a risk group and tumour size (always with the research-use notice)."""
    if risk_group not in ("low", "high"):
        raise InvalidInputError(f"risk group must be 'low' or 'high', got {risk_group!r}")
    if not (isinstance(size_cm, (int, float)) and math.isfinite(size_cm) and size_cm > 0):
        raise InvalidInputError(f"tumour size must be a positive number of cm, got {size_cm!r}")
    size = "small" if size_cm <= cutoff_cm else "large"
    return (f"{_RULES[(size, risk_group)]} (tumour {'<=' if size == 'small' else '>'} {cutoff_cm:g} cm, "
            f"{risk_group} RDP score; {RESEARCH_USE_ONLY})")


@dataclass(frozen=True)
class RdpHead:
    """The linear part of a frozen RDP model (see module docstring for the formulas).

    Attributes
    ----------
    features : input columns used (``rad:<pyradiomics name>`` or ``deep:<k>``), in coefficient order.
    mean, scale : standardisation of each feature (training rows).
    coef : log-odds per standard deviation of each feature (glmBoost ``coef_``).
    intercept : log-odds intercept.
    calib_intercept, calib_slope : Platt recalibration ``a``, ``b``.
    threshold : high-risk threshold on the calibrated score.
    threshold_rule : how the threshold was chosen.
    size_cutoff_cm : size split of the recommendation rule.
    method : learner the head came from.
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    calib_intercept: float = 0.0
    calib_slope: float = 1.0
    threshold: float = 0.5
    threshold_rule: str = "Youden's J on out-of-fold calibrated scores of the training cohort"
    size_cutoff_cm: float = SIZE_CUTOFF_CM
    method: str = "glmboost"

    def __post_init__(self) -> None:
        n = len(self.features)
        if not n or any(len(v) != n for v in (self.mean, self.scale, self.coef)):
            raise InvalidInputError("RDP head: features, mean, scale and coef must be non-empty and of equal length")
        if any(s <= 0 for s in self.scale):
            raise InvalidInputError("RDP head: every scale must be positive")
        if not 0.0 < self.threshold < 1.0:
            raise InvalidInputError(f"RDP head: threshold must be in (0, 1), got {self.threshold!r}")

    @classmethod
    def from_pipeline(cls, pipeline: Any, *, calib_intercept: float = 0.0, calib_slope: float = 1.0,
                      threshold: float = 0.5, method: str = "glmboost") -> "RdpHead":
        """Freeze a fitted :func:`~oncolabel.scoring.models.model_pipeline` whose learner is linear
        (``coef_``/``intercept_`` on the LASSO-selected, standardised features). Features the learner gave a zero
        coefficient (glmBoost never chose them) are left out; the linear predictor is unchanged."""
        steps = pipeline.named_steps
        keep = list(steps["lasso"].keep_)
        scaler = steps["scale"]
        pos = {c: i for i, c in enumerate(scaler.feature_names_in_)}
        clf = steps["clf"]
        if not hasattr(clf, "coef_"):
            raise InvalidInputError(f"{type(clf).__name__} is not a linear model; only linear learners can be frozen")
        coef = np.ravel(clf.coef_)
        used = [j for j in range(len(keep)) if coef[j] != 0.0] or [int(np.argmax(np.abs(coef)))]
        intercept = float(np.ravel([clf.intercept_])[0])
        return cls(features=tuple(keep[j] for j in used), mean=tuple(float(scaler.mean_[pos[keep[j]]]) for j in used),
                   scale=tuple(float(scaler.scale_[pos[keep[j]]]) for j in used),
                   coef=tuple(float(coef[j]) for j in used), intercept=intercept,
                   calib_intercept=float(calib_intercept), calib_slope=float(calib_slope), threshold=float(threshold),
                   method=method)

    def _vector(self, values: Mapping[str, float]) -> np.ndarray:
        missing = [f for f in self.features if f not in values]
        if missing:
            raise InvalidInputError(f"RDP head: feature value(s) missing: {missing[:5]}")
        x = np.array([float(values[f]) for f in self.features])
        if not np.isfinite(x).all():
            raise InvalidInputError("RDP head: a feature value is NaN or infinite")
        return (x - np.asarray(self.mean)) / np.asarray(self.scale)

    def linear_predictor(self, values: Mapping[str, float]) -> float:
        """Log-odds before recalibration."""
        return float(self.intercept + self._vector(values) @ np.asarray(self.coef))

    def score(self, values: Mapping[str, float]) -> float:
        """Calibrated probability of LN metastasis."""
        return float(1.0 / (1.0 + math.exp(-(self.calib_intercept + self.calib_slope * self.linear_predictor(values)))))

    def contributions(self, values: Mapping[str, float]) -> list[dict[str, Any]]:
        """Per-feature log-odds contribution ``coef_j z_j`` (before recalibration), largest magnitude first."""
        z = self._vector(values)
        rows = [{"feature": f, "value": float(values[f]), "z": float(zj), "contribution_log_odds": float(c * zj)}
                for f, zj, c in zip(self.features, z, self.coef)]
        return sorted(rows, key=lambda r: -abs(r["contribution_log_odds"]))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("features", "mean", "scale", "coef"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RdpHead":
        try:
            return cls(**{**d, **{k: tuple(d[k]) for k in ("features", "mean", "scale", "coef")}})
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"RDP head is incomplete or malformed: {exc}") from exc


@dataclass
class RdpResult:
    """One case's RDP score and what it suggests."""

    score: float
    risk_group: str
    size_cm: float
    size_source: str
    recommendation: str
    contributions: list[dict[str, Any]]
    threshold: float
    model_version: str
    provenance: dict[str, Any] = field(default_factory=dict)
    #: the mask's maximum 3D diameter (cm), also when a size was given
    measured_size_cm: float | None = None
    #: e.g. a given size on the other side of the size rule than the mask's
    warnings: tuple[str, ...] = ()

    def to_json(self, top: int = 5) -> dict[str, Any]:
        return {"task": TASK, "notice": RESEARCH_USE_ONLY, "score": round(self.score, 6),
                "score_name": "RDP score (calibrated probability of lymph-node metastasis)",
                "risk_group": self.risk_group, "threshold": round(self.threshold, 6),
                "size_cm": round(self.size_cm, 2), "size_source": self.size_source,
                "size_group": "<= 2 cm" if self.size_cm <= SIZE_CUTOFF_CM else "> 2 cm",
                "recommendation": self.recommendation,
                "top_contributions": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in c.items()}
                                      for c in self.contributions[:top]],
                "model_version": self.model_version, "provenance": self.provenance,
                **({"measured_size_cm": round(self.measured_size_cm, 2)} if self.measured_size_cm is not None else {}),
                **({"warnings": list(self.warnings)} if self.warnings else {})}


class RdpModel:
    """A frozen RDP model: the CNN, the head, the task's preprocessing (CNN input + radiomics settings).

    Args:
        checkpoint: a loaded checkpoint of task ``pannet_ln`` with ``training["rdp_head"]``.
        spec: the task spec (default: ``pannet_ln``).
    """

    def __init__(self, checkpoint: Checkpoint, spec: TaskSpec | None = None) -> None:
        self.spec = spec or get_task(TASK)
        if checkpoint.task != self.spec.name:
            raise CheckpointError(f"checkpoint is for task {checkpoint.task!r}, not {self.spec.name!r}")
        if not checkpoint.preprocessing_matches(self.spec.preprocessing):
            raise CheckpointError("the RDP model was built with other preprocessing or radiomics settings than the "
                                  "task now uses; rebuild it (see the model card)")
        head = (checkpoint.training or {}).get("rdp_head")
        if not head:
            raise CheckpointError(f"{checkpoint.path}: not an RDP model (no 'rdp_head' in its training record)")
        self.checkpoint = checkpoint
        self.head = RdpHead.from_dict(head)
        self.cnns = models_from_checkpoint(checkpoint)

    @property
    def version(self) -> str:
        return self.checkpoint.version

    @classmethod
    def load(cls, path: str | Path) -> "RdpModel":
        """Read a model file (raises ModelNotFoundError / CheckpointError)."""
        return cls(load_checkpoint(path, task=TASK))

    @classmethod
    def build(cls, deep_checkpoint: Checkpoint, head: RdpHead, *, metrics: Mapping[str, Any] | None = None,
              training: Mapping[str, Any] | None = None) -> "RdpModel":
        """Combine a trained CNN checkpoint and a head into an (unsaved) RDP model."""
        spec = get_task(TASK)
        ckpt = Checkpoint(task=TASK, network=dict(deep_checkpoint.network),
                          preprocessing=spec.preprocessing.to_dict(), state_dict=deep_checkpoint.state_dict,
                          metrics=dict(metrics or {}),
                          training={**dict(training or {}), "rdp_head": head.to_dict(),
                                    "cnn": {k: v for k, v in deep_checkpoint.training.items() if k != "history_tail"}},
                          software=package_versions(("torch", "monai", "numpy", "scikit-learn", "pyradiomics")))
        return cls(ckpt, spec)

    def save(self, dest: str | Path) -> Path:
        """Write atomically (temporary file + ``os.replace``); sets the version."""
        return save_checkpoint(self.checkpoint, dest)

    def features(self, image: sitk.Image, mask: sitk.Image) -> tuple[dict[str, float], dict[str, Any]]:
        """The head's inputs of one checked case (radiomics and deep features) and the radiomics provenance."""
        rad = extract_radiomics_with_provenance(image, mask, self.spec.preprocessing.radiomics())
        values = {RAD_PREFIX + k: v for k, v in rad.values.items()}
        x = torch.from_numpy(self.spec.preprocessing.prepare(image, mask))[None]
        with torch.inference_mode():
            z = torch.stack([m(x)[0] for m in self.cnns])
            values[LOGIT_COLUMN] = float((z[:, 1] - z[:, 0]).mean())  # mean log-odds of the (cross-fitted) CNNs
            deep = self.cnns[0].features(x)[0].numpy()
        values.update({f"{DEEP_PREFIX}{k}": float(v) for k, v in enumerate(deep)})
        prov = {k: v for k, v in rad.provenance.items() if k in ("settings", "image_types", "software")}
        return values, prov

    def predict(self, image: str | Path | sitk.Image, mask: str | Path | sitk.Image, *,
                size_cm: float | None = None) -> RdpResult:
        """Score one case.

        Parameters
        ----------
        image, mask : the CT and its tumour mask (label 1) on the same grid (paths or SimpleITK images).
        size_cm : tumour size; default: the maximum 3D diameter of the mask.

        Raises
        ------
        ImageReadError, GeometryError, InvalidInputError
            Unreadable files, mask on another grid, empty mask, bad size.
        """
        img, msk = read_case(image, mask)
        values, rad_prov = self.features(img, msk)
        measured = values[RAD_PREFIX + SIZE_FEATURE] / 10.0
        warnings = []
        if size_cm is None:
            size, source = measured, "measured from the mask (maximum 3D diameter)"
        else:
            if not (isinstance(size_cm, (int, float)) and math.isfinite(size_cm) and 0 < size_cm < 50):
                raise InvalidInputError(f"size_cm must be a positive tumour size in cm (< 50), got {size_cm!r}")
            size, source = float(size_cm), "given"
            cutoff = self.head.size_cutoff_cm
            if (size <= cutoff) != (measured <= cutoff):  # the suggestion turns on this
                warnings.append(f"the given size {size:.1f} cm and the mask's maximum 3D diameter {measured:.1f} cm "
                                f"lie on different sides of the {cutoff:g} cm rule: the suggestion follows the given "
                                "size; check the size and the mask")
        score = self.head.score(values)
        group = "high" if score >= self.head.threshold else "low"
        prov = {"model": {"version": self.version, "sha256": self.checkpoint.sha256,
                          "path": str(self.checkpoint.path) if self.checkpoint.path else None,
                          "metrics": self.checkpoint.metrics},
                "radiomics": rad_prov, "head": {"features": list(self.head.features),
                                                "threshold_rule": self.head.threshold_rule},
                "software": package_versions(), "notice": RESEARCH_USE_ONLY}
        return RdpResult(score=score, risk_group=group, size_cm=size, size_source=source,
                         recommendation=recommendation(group, size, cutoff_cm=self.head.size_cutoff_cm),
                         contributions=self.head.contributions(values), threshold=self.head.threshold,
                         model_version=self.version, provenance=prov, measured_size_cm=measured,
                         warnings=tuple(warnings))

