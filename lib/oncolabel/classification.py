"""Image classifiers shared by the classification tasks: calibrated prediction, explanation, cross-validation.

Pieces (each task supplies only its spec and its preprocessing object):

* :class:`ClassifierPreprocessing`: the contract a task's preprocessing fulfils (read the inputs, make the network
  tensor, map a heat map back onto an input image's grid). Training (:class:`oncolabel.training.Trainer` through its
  ``ClassificationAdapter``), inference and evaluation call the same ``prepare``.
* :class:`LogisticHead`: how network outputs (logit margins, per-branch margins, deep features) and optional
  clinical covariates become a calibrated probability, ``P(y = 1) = sigmoid(b + w . (z - mean) / scale)``:
  temperature scaling (Guo et al., ICML 2017), Platt scaling (Platt 1999), logistic stacking of branches, or a
  logistic regression on deep features. Heads are fitted on *out-of-fold* predictions and stored in the checkpoint
  (``training["heads"]``), so a model file carries its calibration.
* :class:`ClassifierPredictor`: checkpoint + spec -> :class:`ClassificationResult` (probabilities summing to 1,
  prediction, Grad-CAM heat maps on the inputs' grids, provenance, "research use only").
* :func:`cross_validate`: patient-level stratified k-fold CV (:class:`oncolabel.stats.PatientStratifiedKFold`) with
  the generic trainer; out-of-fold margins / features for calibration and for comparing models (DeLong).
* :func:`fit_classifier`: CV, heads, then the final model on all cases, with metrics for the model card.

Binary tasks only (class index 1 is the positive class of every probability and AUC).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.checkpoint import Checkpoint, load_checkpoint
from oncolabel.errors import CheckpointError, InvalidInputError

if TYPE_CHECKING:  # the task specs import this module (their preprocessing contract): no import cycle at run time
    from oncolabel.tasks.base import TaskSpec

logger = logging.getLogger(__name__)

__all__ = [
    "ClassificationPostprocessing", "ClassifierPreprocessing", "Prepared", "LogisticHead", "fit_temperature",
    "fit_logistic", "select_head", "network_outputs", "ClassifierPredictor", "ClassificationResult",
    "CachedPreprocessing", "CVResult", "cross_validate", "fit_classifier", "FitResult", "binary_entropy",
    "model_card", "checkpoint_model", "refit_feature_heads", "update_measurement_heads",
]


# --- task-side contract ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassificationPostprocessing:
    """How a classification task turns network outputs into its reported probability.

    Attributes:
        head: ``temperature`` (fused logit margin / T), ``stacking`` (logistic regression over the branches'
            margins, one model per subset of branches so that missing inputs have a documented fallback) or
            ``deep_features`` (logistic regression on the pooled penultimate features, then Platt scaling).
        covariates: clinical covariates a user may add at inference (e.g. ``("age", "sex_male", "size_mm")``); a
            head using them is chosen only when all are given.
        measurements: image measurements (names from the preprocessing's ``measurement_names``, made by its
            :meth:`ClassifierPreprocessing.measure`) that the ``deep_features`` head stacks with the deep-feature
            margin, or the ``stacking`` head with the branches' margins; the heads without them stay as the
            fallback when a case cannot be measured.
        quadratic_measurements: the measurements enter with their squares and pairwise products (a quadratic
            logistic regression in them, linear in the network's margins).
        measurement_c: inverse L2 penalty of the heads with measurements (on standardised inputs).
        covariate_ranges: ``(name, low, high)`` of each covariate's plausible values (inclusive); a value outside
            (an age of 160, a size of 0) is refused as a typing error instead of extrapolated.
    """

    head: str = "temperature"
    covariates: tuple[str, ...] = ()
    measurements: tuple[str, ...] = ()
    quadratic_measurements: bool = False
    measurement_c: float = 1e4
    covariate_ranges: tuple[tuple[str, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.head not in ("temperature", "stacking", "deep_features"):
            raise InvalidInputError(f"head {self.head!r}: use 'temperature', 'stacking' or 'deep_features'")
        if self.measurements and self.head == "temperature":
            raise InvalidInputError("image measurements are stacked with network outputs: head 'temperature' "
                                    "cannot use them (use 'stacking' or 'deep_features')")
        if self.quadratic_measurements and self.head != "stacking":
            raise InvalidInputError("quadratic measurement terms are supported by the 'stacking' head only (the "
                                    "deep-feature head is composed with the final model's feature regression)")
        if not self.measurement_c > 0:
            raise InvalidInputError(f"measurement_c must be > 0, got {self.measurement_c!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "head": self.head, "covariates": list(self.covariates),
                "measurements": list(self.measurements), "quadratic_measurements": self.quadratic_measurements,
                "measurement_c": self.measurement_c,
                **({"covariate_ranges": [list(r) for r in self.covariate_ranges]} if self.covariate_ranges else {})}


@dataclass
class Prepared:
    """Network input of one case and what is needed to map results back.

    Attributes:
        tensor: ``(channels, *spatial)`` float32.
        images: the input images by name (the grids heat maps are returned on).
        context: preprocessing-specific bookkeeping (crop boxes, projections, ...).
        missing: branch names whose input was absent (filled with zeros; their outputs are not used).
        warnings: how the inputs were adapted that a reader should know (e.g. resampled onto another's grid).
    """

    tensor: torch.Tensor
    images: dict[str, sitk.Image]
    context: dict[str, Any] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


class ClassifierPreprocessing:
    """Base of the classification tasks' preprocessing objects (frozen dataclasses in ``oncolabel.tasks``).

    Subclasses implement :meth:`read` (item -> images), :meth:`prepare` (images -> :class:`Prepared`) and
    :meth:`heatmap` (a network-input-shaped map -> one image per input, on that input's grid), and may override
    :meth:`augment` and :meth:`measure`. :meth:`load` is what the trainer calls; inference calls
    ``prepare(read(...))`` too, so the two are identical by construction.

    Attributes (class level):
        inputs: names of the input images (``("image",)``, the four CT phases, ``("image", "mask")``).
        branch_names: names of the network's branches (e.g. phases), or ``()`` for a single-output network.
        primary_input: the input whose grid the main heat map is written on.
        measurement_names: the image measurements :meth:`measure` makes that a head may use (``()``: none).
    """

    inputs: tuple[str, ...] = ("image",)
    branch_names: tuple[str, ...] = ()
    primary_input: str = "image"
    measurement_names: tuple[str, ...] = ()

    def read(self, item: Mapping[str, Any]) -> dict[str, sitk.Image]:
        raise NotImplementedError

    def prepare(self, images: Mapping[str, sitk.Image], *, allow_missing: bool = False) -> Prepared:
        raise NotImplementedError

    def heatmap(self, cam: np.ndarray, prepared: Prepared) -> dict[str, sitk.Image]:
        raise NotImplementedError

    def load(self, item: Mapping[str, Any]) -> torch.Tensor:
        """The network input of a training / evaluation item (file paths in ``item``)."""
        return self.prepare(self.read(item)).tensor

    def augment(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return x

    def measure(self, images: Mapping[str, sitk.Image]) -> dict[str, float]:
        """Image measurements of one case at the inputs' own resolution (at least ``measurement_names``; more values
        may be reported). Raises :class:`InvalidInputError` (or a subclass) when the case cannot be measured."""
        if self.measurement_names:
            raise NotImplementedError(f"{type(self).__name__} declares measurements but does not implement measure")
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"class": type(self).__name__, **dataclasses.asdict(self)}  # type: ignore[call-overload]


#: item keys that are training targets, not inputs (left out of the preprocessing cache keys)
TARGET_KEYS = ("label", "soft_label")


class CachedPreprocessing:
    """A preprocessing object whose :meth:`load` results are kept in ``cache`` (shared by the folds of a CV run).

    Everything else, including ``to_dict`` (hence checkpoints), is the wrapped object's.
    """

    def __init__(self, inner: Any, cache: dict[str, torch.Tensor] | None = None) -> None:
        self.inner = inner
        self.cache = cache if cache is not None else {}

    @staticmethod
    def key(item: Mapping[str, Any]) -> str:
        return repr(sorted((k, str(v)) for k, v in item.items() if k not in TARGET_KEYS))

    def load(self, item: Mapping[str, Any]) -> torch.Tensor:
        key = self.key(item)
        if key not in self.cache:
            self.cache[key] = self.inner.load(item)
        return self.cache[key]

    def keep_read(self, item: Mapping[str, Any], images: Mapping[str, sitk.Image]) -> None:
        """Cache ``item``'s network input from its images already read (``inner.read(item)``), when the wrapped
        preprocessing's :meth:`load` is the standard ``prepare(read(item))`` (otherwise :meth:`load` reads later)."""
        key = self.key(item)
        if key not in self.cache and type(self.inner).load is ClassifierPreprocessing.load:
            self.cache[key] = self.inner.prepare(images).tensor

    def augment(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        fn = getattr(self.inner, "augment", None)
        return fn(x, rng) if fn is not None else x

    def to_dict(self) -> dict[str, Any]:
        return self.inner.to_dict()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# --- heads: calibration and stacking ----------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass
class LogisticHead:
    """``P(y=1 | z) = sigmoid(intercept + coef . (z - mean) / scale)`` over the named inputs ``z``.

    Attributes:
        inputs: names of the scores used, in order (a name may stand for a vector, e.g. ``features``).
        coef, mean, scale: one value per (expanded) input dimension.
        intercept: the constant.
        method: ``temperature``, ``platt``, ``stacking``, ``deep_features`` or ``multivariable``.
        info: how it was fitted (n, folds, AUC, temperature, regularisation).
        quadratic: scalar inputs (a subset of ``inputs``) whose squares and pairwise products are appended to the
            inputs (each input first standardised by ``quadratic_mean`` / ``quadratic_scale``, the products then
            standardised with the rest): a quadratic logistic regression in them.
    """

    inputs: tuple[str, ...]
    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    method: str
    info: dict[str, Any] = field(default_factory=dict)
    quadratic: tuple[str, ...] = ()
    quadratic_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    quadratic_scale: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def raw_design(self, scores: Mapping[str, Any]) -> np.ndarray:
        """``(n, dims)`` matrix of the inputs and their quadratic terms, not standardised."""
        missing = [k for k in self.inputs if k not in scores]
        if missing:
            raise InvalidInputError(f"the {self.method} head needs {', '.join(missing)}")
        cols = [np.atleast_1d(np.asarray(scores[k], dtype=np.float64)) for k in self.inputs]
        n = cols[0].shape[0]  # every input has the cases on its first axis (a vector input: (n, dims))
        x = np.column_stack([c.reshape(n, -1) for c in cols])
        if not self.quadratic:
            return x
        q = np.column_stack([np.asarray(scores[k], dtype=np.float64).reshape(n) for k in self.quadratic])
        q = (q - self.quadratic_mean) / self.quadratic_scale
        i, j = np.triu_indices(q.shape[1])
        return np.column_stack([x, q[:, i] * q[:, j]])

    def design(self, scores: Mapping[str, Any]) -> np.ndarray:
        """``(n, dims)`` matrix of the inputs (and quadratic terms), standardised."""
        x = self.raw_design(scores)
        if x.shape[1] != self.coef.size:
            raise InvalidInputError(f"the {self.method} head expects {self.coef.size} input values, got {x.shape[1]}")
        return (x - self.mean) / self.scale

    def logit(self, scores: Mapping[str, Any]) -> np.ndarray:
        return self.design(scores) @ self.coef + self.intercept

    def extrapolation(self, scores: Mapping[str, Any], *, limit: float = 4.0) -> list[str]:
        """Warnings for the image measurements and clinical covariates of one case that lie more than ``limit`` SDs
        from the mean of the cases the head was fitted on (the model extrapolates there). Network outputs
        (``margin*``, ``features``) are not checked: a confident network is not an unusual case."""
        z = self.design(scores)[0]
        out, k = [], 0
        for name in self.inputs:
            dims = np.atleast_1d(np.asarray(scores[name], dtype=np.float64)).reshape(1, -1).shape[1]
            network_output = name == "features" or name.startswith("margin")
            if dims == 1 and not network_output and abs(z[k]) > limit:
                out.append(f"{name} = {float(np.ravel(scores[name])[0]):.4g} lies {abs(z[k]):.1f} SD from the mean of "
                           "the cases the model was fitted on: it extrapolates")
            k += dims
        return out

    def predict(self, scores: Mapping[str, Any]) -> np.ndarray:
        """Calibrated ``P(y = 1)`` for each case."""
        return _sigmoid(self.logit(scores))

    def to_dict(self) -> dict[str, Any]:
        out = {"inputs": list(self.inputs), "coef": self.coef.tolist(), "intercept": float(self.intercept),
               "mean": self.mean.tolist(), "scale": self.scale.tolist(), "method": self.method, "info": self.info}
        if self.quadratic:
            out["quadratic"] = {"inputs": list(self.quadratic), "mean": self.quadratic_mean.tolist(),
                                "scale": self.quadratic_scale.tolist()}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LogisticHead":
        try:
            quad = d.get("quadratic") or {"inputs": [], "mean": [], "scale": []}
            return cls(inputs=tuple(d["inputs"]), coef=np.asarray(d["coef"], dtype=np.float64),
                       intercept=float(d["intercept"]), mean=np.asarray(d["mean"], dtype=np.float64),
                       scale=np.asarray(d["scale"], dtype=np.float64), method=str(d["method"]),
                       info=dict(d.get("info", {})), quadratic=tuple(quad["inputs"]),
                       quadratic_mean=np.asarray(quad["mean"], dtype=np.float64),
                       quadratic_scale=np.asarray(quad["scale"], dtype=np.float64))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"a classifier head in the checkpoint is malformed: {exc}") from exc


def _check_binary(y: Any) -> np.ndarray:
    y = np.asarray(y).astype(int)
    if set(np.unique(y).tolist()) != {0, 1}:
        raise InvalidInputError(f"calibration needs labels of both classes 0 and 1, got {np.unique(y).tolist()}")
    return y


def fit_temperature(margin: Any, y: Any, **info: Any) -> LogisticHead:
    """Temperature scaling: ``p = sigmoid(margin / T)``, ``T`` minimising the log loss (Guo et al. 2017)."""
    from scipy.optimize import minimize_scalar

    m = np.asarray(margin, dtype=np.float64)
    y = _check_binary(y)

    def nll(log_t: float) -> float:
        z = m / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    res = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
    t = math.exp(float(res.x))
    return LogisticHead(("margin",), np.array([1.0 / t]), 0.0, np.zeros(1), np.ones(1), "temperature",
                        {"temperature": t, "n": int(m.size), **info})


def _safe_scale(sd: np.ndarray) -> np.ndarray:
    return np.where(sd > 1e-12, sd, 1.0)


def fit_logistic(scores: Mapping[str, Any], y: Any, inputs: Sequence[str], *, method: str, c: float = 1e4,
                 standardise: bool = True, quadratic: Sequence[str] = (), **info: Any) -> LogisticHead:
    """Logistic regression of ``y`` on the named scores (L2 penalty ``1 / c``; ``c = 1e4`` is practically none).

    Platt scaling is this with one input (a margin); stacking with several; ``deep_features`` with a vector input
    and a chosen ``c``. ``quadratic``: scalar inputs whose squares and pairwise products enter too (see
    :class:`LogisticHead`; then every column is standardised).
    """
    from sklearn.linear_model import LogisticRegression

    y = _check_binary(y)
    quadratic = tuple(quadratic)
    outside = sorted(set(quadratic) - set(inputs))
    if outside:
        raise InvalidInputError(f"quadratic terms {outside} must be among the head's inputs {list(inputs)}")
    q_mean, q_scale = np.zeros(0), np.zeros(0)
    if quadratic:
        q = np.column_stack([np.asarray(scores[k], dtype=np.float64).reshape(y.size) for k in quadratic])
        q_mean, q_scale = q.mean(0), _safe_scale(q.std(0))
        standardise = True
    probe = LogisticHead(tuple(inputs), np.zeros(1), 0.0, np.zeros(1), np.ones(1), method, quadratic=quadratic,
                         quadratic_mean=q_mean, quadratic_scale=q_scale)
    x = probe.raw_design({k: np.asarray(scores[k], dtype=np.float64).reshape(y.size, -1) for k in inputs})
    mean = x.mean(0) if standardise else np.zeros(x.shape[1])
    scale = _safe_scale(x.std(0)) if standardise else np.ones(x.shape[1])
    lr = LogisticRegression(C=c, max_iter=5000).fit((x - mean) / scale, y)
    return dataclasses.replace(probe, coef=lr.coef_[0].astype(np.float64), intercept=float(lr.intercept_[0]),
                               mean=mean, scale=scale, info={"n": int(y.size), "C": c, **info})


def compose_platt(head: LogisticHead, outer: LogisticHead) -> LogisticHead:
    """``head``'s logit fed to ``outer`` as its first input ``margin``, as one logistic head.

    ``outer`` is a Platt head (inputs ``("margin",)``: a recalibration) or a stacking head whose other inputs
    (e.g. image measurements) are kept after ``head``'s. ``info["outer"]`` keeps ``outer`` so that ``head`` can be
    refitted and composed again (fine-tuning); ``info["platt"]`` the margin's slope and offset.
    """
    if not outer.inputs or outer.inputs[0] != "margin":
        raise InvalidInputError(f"the outer head's first input must be 'margin', got {list(outer.inputs)}")
    if head.quadratic or outer.quadratic:
        raise InvalidInputError("heads with quadratic terms cannot be composed")
    a = float(outer.coef[0] / outer.scale[0])
    b = float(outer.intercept - outer.coef[0] * outer.mean[0] / outer.scale[0])
    return dataclasses.replace(head, inputs=head.inputs + outer.inputs[1:],
                               coef=np.concatenate([head.coef * a, outer.coef[1:]]),
                               intercept=head.intercept * a + b, mean=np.concatenate([head.mean, outer.mean[1:]]),
                               scale=np.concatenate([head.scale, outer.scale[1:]]),
                               info={**head.info, "platt": {"a": a, "b": b}, "outer": outer.to_dict()})


def refit_feature_heads(heads: Sequence[LogisticHead], model: nn.Module, spec: TaskSpec,
                        items: Sequence[Mapping[str, Any]]) -> list[LogisticHead]:
    """The heads of a fine-tuned network: each composed deep-feature head gets its feature regression refitted on
    ``model``'s features of ``items`` (with labels; the same penalty ``C``) and composed again with its stored outer
    head (``info["outer"]``: a Platt recalibration or a stacking with measurements; older checkpoints: the Platt
    slope and offset ``info["platt"]``). Other heads are returned unchanged, and all of them when ``items`` do not
    hold two cases of each class."""
    heads = list(heads)
    y = np.asarray([int(it["label"]) for it in items])
    composed = [k for k, h in enumerate(heads) if "features" in h.inputs and "platt" in h.info]
    if not composed or y.size == 0 or min(np.bincount(y, minlength=2)) < 2:
        return heads
    x = torch.stack([spec.preprocessing.load(it) for it in items])
    feats = network_outputs(model, x, features=True)["features"]
    for k in composed:
        h = heads[k]
        refit = fit_logistic({"features": feats}, y, ("features",), method="deep_features",
                             c=float(h.info.get("C", 0.05)), fitted_on="datastore labels (fine-tuning)")
        platt = h.info["platt"]
        outer = (LogisticHead.from_dict(h.info["outer"]) if "outer" in h.info else
                 LogisticHead(("margin",), np.array([platt["a"]]), platt["b"], np.zeros(1), np.ones(1), "platt"))
        heads[k] = compose_platt(refit, outer)
    return heads


def update_measurement_heads(heads: Sequence[LogisticHead], model: nn.Module, spec: TaskSpec,
                             items: Sequence[Mapping[str, Any]], *, min_per_class: int = 10) -> list[LogisticHead]:
    """The measurement-bearing stacking heads updated from labelled cases (an active-learning round's labels).

    Each head that stacks network margins with image measurements (no deep-feature vector, no clinical covariates:
    datastore cases carry neither) gets the maximum a-posteriori fit of its measurement coefficients and intercept
    under a Gaussian prior centred on its current values, ``sum log-loss + lambda |theta - theta_0|^2 / 2``, its
    standardisation kept. The prior carries what the head was fitted on: ``lambda = 1 / C + n_0 / 4``, ``C`` the
    head's own penalty and ``n_0 / 4`` the Fisher information per standardised coefficient of ``n_0`` cases (its
    ``info["n"]``; ``1 / 4 = max p (1 - p)``), so N new labels weigh about as N cases beside the ``n_0``. (The head's
    penalty alone as the prior let 50-100 labels pull a 1000-case head below its held-out AUC: 0.879 -> 0.860.)
    The margins' coefficients stay fixed (their contribution is an offset computed with ``model``, the fine-tuned
    network, whose margins on its own training cases are in-sample). Cases that cannot be measured are left out
    (logged). Heads are returned unchanged when fewer than ``min_per_class`` measured cases of a class remain.
    """
    from scipy.optimize import minimize

    heads = list(heads)
    names = tuple(spec.preprocessing.measurement_names)
    covariates = set(spec.postprocessing.covariates)
    targets = [k for k, h in enumerate(heads) if set(names) & set(h.inputs) and "features" not in h.inputs
               and not covariates & set(h.inputs)]
    y = np.asarray([int(it["label"]) for it in items])
    if not targets or y.size == 0 or min(np.bincount(y, minlength=2)) < min_per_class:
        return heads
    measured, inputs, keep = [], [], []
    for i, it in enumerate(items):
        images = spec.preprocessing.read(it)  # read once: measured, and prepared as ``load`` would
        try:
            measured.append(spec.preprocessing.measure(images))
        except InvalidInputError as exc:
            logger.warning("%s: a labelled case cannot be measured and is left out of the head update: %s",
                           spec.name, exc)
            continue
        inputs.append(spec.preprocessing.prepare(images).tensor)
        keep.append(i)
    y = y[keep]
    if min(np.bincount(y, minlength=2)) < min_per_class:
        return heads
    x = torch.stack(inputs)
    scores: dict[str, Any] = dict(network_outputs(model, x, spec.preprocessing.branch_names))
    scores.update({m: np.array([d[m] for d in measured], dtype=np.float64) for m in names})
    for k in targets:
        h = heads[k]
        z = h.design(scores)
        fixed = np.zeros(h.coef.size, dtype=bool)
        fixed[[j for j, name in enumerate(h.inputs) if name.startswith("margin")]] = True
        offset, zf = z[:, fixed] @ h.coef[fixed], z[:, ~fixed]
        theta0 = np.append(h.coef[~fixed], h.intercept)
        lam = 1.0 / float(h.info.get("C", 1e4)) + float(h.info.get("n", 0)) / 4.0

        def objective(t: np.ndarray) -> tuple[float, np.ndarray]:
            eta = zf @ t[:-1] + t[-1] + offset
            g = _sigmoid(eta) - y
            d = t - theta0
            return (float(np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * lam * d @ d),
                    np.append(zf.T @ g, g.sum()) + lam * d)

        res = minimize(objective, theta0, jac=True, method="L-BFGS-B")
        coef = h.coef.copy()
        coef[~fixed] = res.x[:-1]
        heads[k] = dataclasses.replace(h, coef=coef, intercept=float(res.x[-1]), info={
            **h.info, "updated_on": {"labels": int(y.size), "prior_precision": lam,
                                     "method": "MAP, prior centred on the served head, precision 1 / C + n / 4; "
                                               "margins' coefficients fixed"}})
    return heads


def select_head(heads: Sequence[LogisticHead], available: set[str]) -> LogisticHead:
    """The head using the most of the ``available`` inputs (the first such head on ties).

    Raises:
        InvalidInputError: no head can be computed from what is available.
    """
    usable = [h for h in heads if set(h.inputs) <= available]
    if not usable:
        raise InvalidInputError(f"no calibrated model can be computed from {sorted(available)}; the model's heads "
                                f"need {[list(h.inputs) for h in heads]}")
    return max(usable, key=lambda h: (len(h.inputs), -heads.index(h)))


def fused_logits(logits: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """``(batch, classes)`` logits; a multi-branch output ``(batch, branches, classes)`` is averaged over branches,
    unless ``model`` has a fused classifier (``model.fused_output``), whose logits (the last row) are returned."""
    if logits.ndim != 3:
        return logits
    return logits[:, -1] if getattr(model, "fused_output", False) else logits.mean(dim=1)


def network_outputs(model: nn.Module, x: torch.Tensor, branch_names: Sequence[str] = (), *,
                    features: bool = False, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Scores of a batch of inputs ``(n, channels, *spatial)`` in eval mode, without gradients.

    Keys: ``margin`` (logit of class 1 minus logit of class 0; a multi-branch network's margins averaged, or its
    fused classifier's margin when it has one, which is then also ``margin_fused``), ``margin_<branch>`` per branch,
    and ``features`` ``(n, n_features)`` when asked for.
    """
    fused = bool(getattr(model, "fused_output", False))
    was = model.training
    model.eval()
    out: dict[str, list[np.ndarray]] = {}
    try:
        with torch.inference_mode():
            for start in range(0, x.shape[0], batch_size):
                xb = x[start:start + batch_size].float()
                logits = model(xb)
                main = fused_logits(logits, model)
                out.setdefault("margin", []).append((main[:, 1] - main[:, 0]).double().numpy())
                if logits.ndim == 3:
                    margins = (logits[..., 1] - logits[..., 0]).double().numpy()
                    if fused:
                        margins = margins[:, :-1]
                        out.setdefault("margin_fused", []).append(out["margin"][-1])
                    names = list(branch_names) or [str(k) for k in range(margins.shape[1])]
                    for k, name in enumerate(names):
                        out.setdefault(f"margin_{name}", []).append(margins[:, k])
                if features:
                    out.setdefault("features", []).append(model.features(xb).double().numpy())
    finally:
        model.train(was)
    return {k: np.concatenate(v) for k, v in out.items()}


def binary_entropy(p: Any) -> np.ndarray:
    """Entropy in bits of a Bernoulli(p): 1 at p = 0.5, 0 at p in {0, 1}."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


# --- prediction --------------------------------------------------------------------------------------------------


@dataclass
class ClassificationResult:
    """Output of :meth:`ClassifierPredictor.predict`.

    Attributes:
        probabilities: class name -> calibrated probability (sums to 1).
        prediction: the most probable class.
        head: the calibrated model used (its method and inputs).
        branch_probabilities: branch name -> calibrated probability of class 1 from that branch alone.
        heatmaps: input name -> Grad-CAM heat map (float32, [0, 1]) on that input's grid.
        measurements: the image measurements made for the model's heads (name -> value).
        measurement_error: why the case could not be measured (the head without measurements was used).
        warnings: how the inputs were adapted (:attr:`Prepared.warnings`), and inputs of the head used that lie far
            outside the cases it was fitted on.
        provenance: model version, settings, software, notice.
    """

    probabilities: dict[str, float]
    prediction: str
    head: dict[str, Any]
    branch_probabilities: dict[str, float] = field(default_factory=dict)
    heatmaps: dict[str, sitk.Image] = field(default_factory=dict)
    missing_inputs: tuple[str, ...] = ()
    measurements: dict[str, float] = field(default_factory=dict)
    measurement_error: str | None = None
    warnings: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        probs = ", ".join(f"{k} {v:.3f}" for k, v in self.probabilities.items())
        return (f"{self.prediction} ({probs}; model {self.provenance.get('model_version', '?')}; "
                f"{RESEARCH_USE_ONLY})")

    def to_json(self) -> dict[str, Any]:
        return {"notice": RESEARCH_USE_ONLY, "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
                "prediction": self.prediction, "calibrated": True, "head": self.head,
                "branch_probabilities": {k: round(v, 6) for k, v in self.branch_probabilities.items()},
                "missing_inputs": list(self.missing_inputs), "heatmap_inputs": sorted(self.heatmaps),
                **({"measurements": {k: round(v, 6) for k, v in self.measurements.items()}} if self.measurements
                   else {}),
                **({"measurement_error": self.measurement_error} if self.measurement_error else {}),
                **({"warnings": list(self.warnings)} if self.warnings else {}),
                "model_version": self.provenance.get("model_version"), "provenance": self.provenance}


def checkpoint_heads(ckpt: Checkpoint) -> list[LogisticHead]:
    """The calibrated heads stored in a classification checkpoint."""
    raw = (ckpt.training or {}).get("heads")
    if not raw:
        raise CheckpointError(f"checkpoint {ckpt.path}: no calibrated classifier heads (training['heads']); "
                              "train it with oncolabel.classification.fit_classifier")
    return [LogisticHead.from_dict(h) for h in raw]


class _FusedOutput(nn.Module):
    """The fused classifier's logits ``(batch, classes)`` of a network with ``fused_output`` (for Grad-CAM)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.train(net.training)  # so that Grad-CAM restores the network's own mode, not a new module's default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, -1]


class ClassifierPredictor:
    """Calibrated classification with a task's checkpoint.

    Args:
        checkpoint: path or loaded :class:`Checkpoint` (``None``: the task's shipped model).
        task: task name or spec (``kind="classification"``).
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, checkpoint: str | Path | Checkpoint | None = None, *, task: str | TaskSpec,
                 device: str | torch.device | None = "cpu") -> None:
        from oncolabel.inference import build_model, default_checkpoint_path, resolve_device
        from oncolabel.tasks import get_task

        self.spec = get_task(task) if isinstance(task, str) else task
        if self.spec.kind != "classification":
            raise InvalidInputError(f"task {self.spec.name!r} is a {self.spec.kind} task, not classification")
        if checkpoint is None:
            checkpoint = default_checkpoint_path(self.spec)
        self.checkpoint = (checkpoint if isinstance(checkpoint, Checkpoint)
                           else load_checkpoint(checkpoint, task=self.spec.name))
        self.device = resolve_device(device)
        self.model = build_model(self.checkpoint, self.spec).to(self.device)
        self.heads = checkpoint_heads(self.checkpoint)
        self.classes = sorted(self.spec.labels, key=lambda k: self.spec.labels[k])
        if len(self.classes) != 2:
            raise InvalidInputError(f"task {self.spec.name!r} has {len(self.classes)} classes; only binary "
                                    "classifiers are supported")

    @property
    def version(self) -> str:
        return self.checkpoint.version

    @property
    def preprocessing(self) -> Any:
        return self.spec.preprocessing

    def needs_features(self) -> bool:
        return any("features" in h.inputs for h in self.heads)

    def needs_measurements(self) -> bool:
        used = {name for h in self.heads for name in h.inputs}
        return bool(used & set(self.preprocessing.measurement_names))

    def scores(self, prepared: Prepared) -> dict[str, np.ndarray]:
        """Network scores of one prepared case, each with a leading axis of length 1 (missing branches and
        everything fused from them dropped)."""
        out = network_outputs(self.model, prepared.tensor[None].to(self.device),
                              self.preprocessing.branch_names, features=self.needs_features())
        if prepared.missing:
            drop = {"margin", "margin_fused", "features"} | {f"margin_{b}" for b in prepared.missing}
            out = {k: v for k, v in out.items() if k not in drop}
        return out

    def predict_prepared(self, prepared: Prepared, *, covariates: Mapping[str, float] | None = None,
                         heatmaps: bool = True, measurements: Mapping[str, float] | None = None,
                         measurement_error: str | None = None) -> ClassificationResult:
        scores: dict[str, Any] = dict(self.scores(prepared))
        scores.update({k: np.array([float(v)]) for k, v in (measurements or {}).items()
                       if k in self.preprocessing.measurement_names})
        cov = {k: np.array([float(v)]) for k, v in (covariates or {}).items() if v is not None}
        unknown = sorted(set(cov) - set(self.spec.postprocessing.covariates))
        if unknown:
            raise InvalidInputError(f"unknown covariate(s) {unknown} for task {self.spec.name!r} "
                                    f"(known: {list(self.spec.postprocessing.covariates)})")
        limits = {name: (lo, hi) for name, lo, hi in self.spec.postprocessing.covariate_ranges}
        for k, v in cov.items():
            x = float(v[0])
            lo, hi = limits.get(k, (-np.inf, np.inf))
            if not (np.isfinite(x) and lo <= x <= hi):
                raise InvalidInputError(f"{k} = {x:g} is not a plausible value (expected {lo:g} to {hi:g}); check it")
        scores.update(cov)
        head = select_head(self.heads, set(scores))
        p1 = float(np.clip(head.predict(scores)[0], 0.0, 1.0))
        probs = {self.classes[0]: 1.0 - p1, self.classes[1]: p1}
        branch = {}
        for b in self.preprocessing.branch_names:
            single = [h for h in self.heads if h.inputs == (f"margin_{b}",)]
            if single and f"margin_{b}" in scores:
                branch[b] = float(single[0].predict(scores)[0])
        maps = self.explain(prepared, head) if heatmaps else {}
        return ClassificationResult(probabilities=probs, prediction=max(probs, key=probs.get),
                                    head={"method": head.method, "inputs": list(head.inputs)},
                                    branch_probabilities=branch, heatmaps=maps, missing_inputs=prepared.missing,
                                    measurements=dict(measurements or {}), measurement_error=measurement_error,
                                    warnings=(*prepared.warnings, *head.extrapolation(scores)),
                                    provenance=self.provenance())

    def predict(self, images: Mapping[str, sitk.Image], *, covariates: Mapping[str, float] | None = None,
                allow_missing: bool = False, heatmaps: bool = True) -> ClassificationResult:
        """Classify one case given its input images by name (see the task's ``preprocessing.inputs``).

        When the model's heads use image measurements and the case cannot be measured (e.g. no noise reference
        tissue), the head without them is used and the reason is returned (``measurement_error``, logged)."""
        prepared = self.preprocessing.prepare(images, allow_missing=allow_missing)
        measured, error = None, None
        if self.needs_measurements():
            try:
                measured = self.preprocessing.measure(images)
            except InvalidInputError as exc:
                error = str(exc)
                logger.warning("%s: image measurements unavailable, using the head without them: %s",
                               self.spec.name, error)
        return self.predict_prepared(prepared, covariates=covariates, heatmaps=heatmaps, measurements=measured,
                                     measurement_error=error)

    def explain(self, prepared: Prepared, head: LogisticHead | None = None) -> dict[str, sitk.Image]:
        """Grad-CAM maps on the inputs' grids; with branches, the maps of the used branches weighted by the
        absolute stacking coefficients of ``head`` (equal weights otherwise). When ``head`` uses the network's fused
        classifier (``margin_fused``), that classifier's Grad-CAM in each branch's trunk is added with the absolute
        coefficient of ``margin_fused`` (shared equally between the branches)."""
        from oncolabel.explain import grad_cam

        x = prepared.tensor[None].to(self.device)
        names = self.preprocessing.branch_names
        if not names:
            return self.preprocessing.heatmap(grad_cam(self.model, x, target_class=1), prepared)

        def coef(name: str) -> float | None:
            return (abs(float(head.coef[list(head.inputs).index(name)])) if head is not None and name in head.inputs
                    else None)

        present = [k for k, b in enumerate(names) if b not in prepared.missing]
        parts: list[tuple[float, Callable[[], np.ndarray]]] = []
        for k in present:
            w = coef(f"margin_{names[k]}")
            parts.append((1.0 if w is None else w, lambda k=k: grad_cam(self.model, x, target_class=1, branch=k)))
        fused = coef("margin_fused")
        if fused is not None and getattr(self.model, "fused_output", False):
            for k in present:
                parts.append((fused / len(present), lambda k=k: grad_cam(
                    _FusedOutput(self.model), x, target_class=1, layer=self.model.cam_target(k))))
        total = sum(w for w, _ in parts) or 1.0
        cam = sum(w / total * make() for w, make in parts)
        return self.preprocessing.heatmap(np.asarray(cam, dtype=np.float32), prepared)

    def uncertainty(self, images: Mapping[str, sitk.Image], *, measure: str = "entropy") -> dict[str, float]:
        """Active-learning uncertainty of one case: ``entropy`` (bits) or ``margin`` (1 - |2p - 1|)."""
        res = self.predict(images, heatmaps=False, allow_missing=False)
        p = res.probabilities[self.classes[1]]
        ent, mar = float(binary_entropy(p)), float(1.0 - abs(2.0 * p - 1.0))
        if measure not in ("entropy", "margin"):
            raise InvalidInputError(f"uncertainty measure {measure!r}: use 'entropy' or 'margin'")
        return {"uncertainty": ent if measure == "entropy" else mar, "entropy": ent, "margin": mar,
                "probability": p, "measure": measure}

    def provenance(self) -> dict[str, Any]:
        from oncolabel.inference import predictor_provenance

        return predictor_provenance(self.spec, self.checkpoint, self.device)


# --- cross-validation and fitting --------------------------------------------------------------------------------


@dataclass
class CVResult:
    """Out-of-fold results of :func:`cross_validate`.

    Attributes:
        y: class index per item. groups: patient id per item. fold: test fold of each item.
        scores: out-of-fold network scores (``margin``, ``margin_<branch>``, and ``feature_margin`` when a deep-
            feature classifier was fitted inside each fold).
        fold_auc: AUC of ``margin`` in each test fold.
        seconds: wall time. settings: what was run.
    """

    y: np.ndarray
    groups: np.ndarray
    fold: np.ndarray
    scores: dict[str, np.ndarray]
    fold_auc: list[float]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)


def checkpoint_model(ckpt: Checkpoint) -> nn.Module:
    """The network of a checkpoint with its weights, in eval mode (no preprocessing check: see
    :func:`oncolabel.inference.build_model` for that)."""
    from oncolabel.tasks.base import build_network

    model = build_network(ckpt.network["name"], ckpt.network["kwargs"])
    model.load_state_dict(ckpt.state_dict)
    return model.eval()


def _stack(prep: Any, items: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    return torch.stack([prep.load(it) for it in items])


def _feature_head(train_feats: np.ndarray, y: np.ndarray, c: float, **info: Any) -> LogisticHead:
    return fit_logistic({"features": train_feats}, y, ("features",), method="deep_features", c=c, **info)


def cross_validate(spec: TaskSpec, items: Sequence[Mapping[str, Any]], *, groups: Sequence[Any] | None = None,
                   n_splits: int = 5, seed: int = 0, iterations: int | None = None, batch_size: int | None = None,
                   learning_rate: float | None = None, feature_c: float | None = None, device: str = "cpu",
                   cache: dict[str, torch.Tensor] | None = None,
                   progress: Callable[[dict[str, Any]], None] | None = None) -> CVResult:
    """Patient-level stratified k-fold cross-validation with the generic trainer.

    Each fold trains the task's network from scratch on the other folds (``iterations`` steps, seed
    ``seed + fold``, no early stopping on the test fold) and scores its test fold. With ``feature_c`` a logistic
    regression (L2 penalty ``1/feature_c``) on the fold model's deep features of its *training* cases is fitted and
    applied to its test cases (``scores["feature_margin"]``). The image measurements the task's head uses
    (``spec.postprocessing.measurements``) are made on every item first and returned among the scores.

    Args:
        items: dicts with the inputs (file paths) and ``label``.
        groups: patient id per item (default: each item its own patient).
        cache: preprocessed tensors, shared with other runs on the same items (filled here).
    """
    from oncolabel.stats import PatientStratifiedKFold, roc_auc
    from oncolabel.training import Trainer

    start = time.time()
    y = np.asarray([int(it["label"]) for it in items])
    g = np.asarray(groups if groups is not None else [f"item{i}" for i in range(len(items))])
    prep = CachedPreprocessing(spec.preprocessing, cache)
    cspec = dataclasses.replace(spec, preprocessing=prep)
    fold = np.full(len(items), -1)
    scores: dict[str, np.ndarray] = measure_items(spec, items, keep=prep)
    fold_auc = []
    splits = PatientStratifiedKFold(n_splits, random_state=seed).split(None, y, groups=g)
    for k, (train, test) in enumerate(splits):
        result = Trainer(cspec, iterations=iterations, batch_size=batch_size, learning_rate=learning_rate,
                         device=device, seed=seed + k).fit([items[i] for i in train])
        model = checkpoint_model(result.checkpoint)
        x_test = _stack(prep, [items[i] for i in test])
        out = network_outputs(model, x_test, spec.preprocessing.branch_names, features=feature_c is not None)
        if feature_c is not None:
            x_train = _stack(prep, [items[i] for i in train])
            train_feats = network_outputs(model, x_train, features=True)["features"]
            head = _feature_head(train_feats, y[train], feature_c)
            out["feature_margin"] = head.logit({"features": out.pop("features")})
        for name, v in out.items():
            scores.setdefault(name, np.zeros(len(items)))[test] = v
        fold[test] = k
        auc = float(roc_auc(y[test], out["margin"])) if len(set(y[test].tolist())) == 2 else float("nan")
        fold_auc.append(auc)
        rec = {"fold": k, "auc": round(auc, 4), "n_train": int(len(train)), "n_test": int(len(test)),
               "seconds": round(time.time() - start, 1)}
        logger.info("cv %s: %s", spec.name, rec)
        if progress is not None:
            progress(rec)
    settings = {"n_splits": n_splits, "seed": seed, "iterations": iterations or spec.training.max_iterations,
                "batch_size": batch_size or spec.training.batch_size,
                "learning_rate": learning_rate or spec.training.learning_rate, "feature_c": feature_c,
                "n": len(items), "patients": int(np.unique(g).size)}
    return CVResult(y=y, groups=g, fold=fold, scores=scores, fold_auc=fold_auc, seconds=time.time() - start,
                    settings=settings)


def measure_items(spec: TaskSpec, items: Sequence[Mapping[str, Any]], *,
                  keep: CachedPreprocessing | None = None) -> dict[str, np.ndarray]:
    """The image measurements the task's head uses (``spec.postprocessing.measurements``), one array per name over
    the items (``{}`` when it uses none). With ``keep``, the network input of every item read is cached there from
    the same images (each case is read once for both).

    Raises:
        InvalidInputError: an item cannot be measured (the message names it): a training cohort must be measurable.
    """
    names = tuple(spec.postprocessing.measurements)
    unknown = sorted(set(names) - set(spec.preprocessing.measurement_names))
    if unknown:
        raise InvalidInputError(f"task {spec.name!r} asks for measurements {unknown} that its preprocessing does not "
                                f"make (it makes {list(spec.preprocessing.measurement_names)})")
    out = {n: np.zeros(len(items)) for n in names}
    for i, item in enumerate(items if names else ()):
        try:
            images = spec.preprocessing.read(item)
            values = spec.preprocessing.measure(images)
            if keep is not None:
                keep.keep_read(item, images)
        except InvalidInputError as exc:
            where = item.get("image") or item.get("case") or f"item {i}"
            raise type(exc)(f"{where}: {exc}") from exc
        for n in names:
            out[n][i] = values[n]
    return out


def fit_heads(spec: TaskSpec, cv: CVResult, *, covariates: Mapping[str, np.ndarray] | None = None
              ) -> list[LogisticHead]:
    """Calibrated heads from out-of-fold scores (the deep-feature head is completed by :func:`fit_classifier`).

    * ``temperature``: temperature scaling of the fused margin.
    * ``stacking``: one logistic model per non-empty subset of branches (all branches first), plus, with
      ``covariates``, the multivariable model on all branches and the covariates. A network with a fused classifier
      (scores ``margin_fused``) adds the stacking of the fused and all branch margins (chosen whenever every input is
      there), and its multivariable model uses the fused margin too; the branch subsets remain the fallback. With
      image measurements (``postprocessing.measurements``) the stacking of all margins and the measurements comes
      first (and, with covariates, the multivariable model with them), quadratic in the measurements when
      ``quadratic_measurements``; the heads without measurements remain the fallback for a case that cannot be
      measured.
    * ``deep_features``: with image measurements (``postprocessing.measurements``) first the logistic stacking of
      the out-of-fold ``feature_margin`` and the measurements; then the Platt scaling of the ``feature_margin``
      (both composed with the final model's feature regression later), and temperature scaling of the margin as a
      fallback.
    """
    post = spec.postprocessing
    y, s = cv.y, cv.scores
    info = {"fitted_on": f"out-of-fold predictions, {cv.settings.get('n_splits')}-fold patient-level CV",
            "n": int(y.size)}
    heads: list[LogisticHead] = []
    measured = list(post.measurements)
    missing = [m for m in measured if m not in s]
    if missing:
        raise InvalidInputError(f"the CV scores lack the measurements {missing}")
    if post.head == "stacking":
        names = list(spec.preprocessing.branch_names)
        fused = ["margin_fused"] if "margin_fused" in s else []
        margins = fused + [f"margin_{b}" for b in names]
        with_measured = {"quadratic": measured if post.quadratic_measurements else (), "c": post.measurement_c}
        if covariates:
            cov_names = list(post.covariates)
            data = {**s, **{k: np.asarray(covariates[k], dtype=np.float64) for k in cov_names}}
            if measured:
                heads.append(fit_logistic(data, y, margins + measured + cov_names, method="multivariable",
                                          **with_measured, **info))
            heads.append(fit_logistic(data, y, margins + cov_names, method="multivariable", **info))
        if measured:
            heads.append(fit_logistic(s, y, margins + measured, method="stacking", **with_measured, **info))
        if fused:
            heads.append(fit_logistic(s, y, margins, method="stacking", **info))
        for r in range(len(names), 0, -1):
            for subset in itertools.combinations(names, r):
                method = "stacking" if r > 1 else "platt"
                heads.append(fit_logistic(s, y, [f"margin_{b}" for b in subset], method=method, **info))
    elif post.head == "deep_features":
        if "feature_margin" not in s:
            raise InvalidInputError("the deep_features head needs a CV run with feature_c set")
        if measured:
            heads.append(fit_logistic({**s, "margin": s["feature_margin"]}, y, ["margin", *measured],
                                      method="stacking", c=post.measurement_c, **info))
        heads.append(fit_logistic({"margin": s["feature_margin"]}, y, ("margin",), method="platt", **info))
        heads.append(fit_temperature(s["margin"], y, **info))
    else:
        heads.append(fit_temperature(s["margin"], y, **info))
    return heads


@dataclass
class FitResult:
    """What :func:`fit_classifier` produced: the final checkpoint (heads and metrics inside) and the CV run."""

    checkpoint: Checkpoint
    cv: CVResult
    calibrated_oof: np.ndarray
    metrics: dict[str, Any]


def _subset(cv: CVResult, rows: np.ndarray) -> CVResult:
    return dataclasses.replace(cv, y=cv.y[rows], groups=cv.groups[rows], fold=cv.fold[rows],
                               scores={k: v[rows] for k, v in cv.scores.items()})


def calibrated_oof(spec: TaskSpec, cv: CVResult, heads: Sequence[LogisticHead] | None = None,
                   covariates: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Cross-fitted calibrated probabilities of the task's main (image-only) head: for each test fold, the heads are
    fitted on the other folds' out-of-fold scores and applied to it, so that the reported AUC, Brier score and
    calibration slope / intercept are not measured on the data the calibration was fitted on. (``heads`` is
    accepted for backwards compatibility and not used.)"""
    out = np.zeros(cv.y.size)
    for k in np.unique(cv.fold):
        train, test = np.flatnonzero(cv.fold != k), np.flatnonzero(cv.fold == k)
        fold_heads = fit_heads(spec, _subset(cv, train))
        scores = {n: v[test] for n, v in cv.scores.items()}
        if spec.postprocessing.head == "deep_features":
            out[test] = fold_heads[0].predict({**scores, "margin": scores["feature_margin"]})
        else:
            out[test] = select_head([h for h in fold_heads if h.method != "multivariable"], set(scores)).predict(scores)
    return out


def fit_classifier(spec: TaskSpec, items: Sequence[Mapping[str, Any]], *, groups: Sequence[Any] | None = None,
                   n_splits: int = 5, seed: int = 0, iterations: int | None = None, batch_size: int | None = None,
                   learning_rate: float | None = None, feature_c: float = 0.05,
                   covariates: Mapping[str, np.ndarray] | None = None, device: str = "cpu",
                   progress: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Cross-validate, fit the calibrated heads on out-of-fold scores, train the final model on every item.

    The final checkpoint's ``training["heads"]`` holds the heads, ``metrics`` the CV AUC (DeLong 95% CI),
    calibration (Brier, slope, intercept of the out-of-fold calibrated probabilities) and per-branch AUCs.
    """
    from oncolabel.training import Trainer

    use_features = spec.postprocessing.head == "deep_features"
    cache: dict[str, torch.Tensor] = {}
    cv = cross_validate(spec, items, groups=groups, n_splits=n_splits, seed=seed, iterations=iterations,
                        batch_size=batch_size, learning_rate=learning_rate,
                        feature_c=feature_c if use_features else None, device=device, cache=cache,
                        progress=progress)
    heads = fit_heads(spec, cv, covariates=covariates)
    p_oof = calibrated_oof(spec, cv, heads, covariates)
    prep = CachedPreprocessing(spec.preprocessing, cache)
    final = Trainer(dataclasses.replace(spec, preprocessing=prep), iterations=iterations, batch_size=batch_size,
                    learning_rate=learning_rate, device=device, seed=seed + n_splits).fit(list(items))
    ckpt = final.checkpoint
    if use_features:
        model = checkpoint_model(ckpt)
        feats = network_outputs(model, _stack(prep, items), features=True)["features"]
        feature_head = _feature_head(feats, cv.y, feature_c, fitted_on="final model, all cases")
        heads = [h if h.method == "temperature" else compose_platt(feature_head, h) for h in heads]
    metrics = cv_metrics(cv, p_oof)
    ckpt.metrics.update(metrics)
    ckpt.training["heads"] = [h.to_dict() for h in heads]
    ckpt.training["cv"] = cv.settings
    return FitResult(checkpoint=ckpt, cv=cv, calibrated_oof=p_oof, metrics=metrics)


def cv_metrics(cv: CVResult, p_calibrated: np.ndarray) -> dict[str, Any]:
    """CV AUC with DeLong CI, per-branch AUCs, calibration of the calibrated out-of-fold probabilities."""
    from oncolabel.stats import calibration, roc_auc, roc_auc_ci

    ci = roc_auc_ci(cv.y, p_calibrated)
    out: dict[str, Any] = {"cv_auc": round(float(ci.auc), 4), "cv_auc_ci95": [round(float(ci.ci_low), 4),
                                                                              round(float(ci.ci_high), 4)],
                           "cv_accuracy": round(float(np.mean((p_calibrated >= 0.5) == cv.y)), 4),
                           "cv_brier": round(float(np.mean((p_calibrated - cv.y) ** 2)), 4), "cv_n": int(cv.y.size),
                           "cv_fold_auc": [round(a, 4) for a in cv.fold_auc]}
    try:
        cal = calibration(cv.y, p_calibrated)
        out.update({"cv_calibration_slope": round(cal.slope, 3), "cv_calibration_intercept": round(cal.intercept, 3)})
    except InvalidInputError as exc:  # e.g. perfectly separated tiny cohorts: say so instead of failing the fit
        out["cv_calibration"] = f"undefined: {exc}"
    for name, v in cv.scores.items():
        if name.startswith("margin_") or name == "feature_margin":
            out[f"cv_auc_{name}"] = round(float(roc_auc(cv.y, v)), 4)
    return out


def model_card(ckpt: Checkpoint, *, command: str, seed: int, cohort: Mapping[str, Any],
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON card shipped next to a model file (what, how made, how good; research use only)."""
    return {"notice": RESEARCH_USE_ONLY, "task": ckpt.task, "model_version": ckpt.version, "sha256": ckpt.sha256,
            "command": command, "seed": seed, "cohort": dict(cohort), "metrics": ckpt.metrics,
            "network": dict(ckpt.network), "preprocessing": dict(ckpt.preprocessing),
            "heads": [{"method": h["method"], "inputs": h["inputs"]} for h in ckpt.training.get("heads", [])],
            "training": {k: v for k, v in ckpt.training.items() if k not in ("heads", "history_tail")},
            "created_utc": ckpt.created_utc, "software": ckpt.software, **(extra or {})}
