"""Deep features: the task's CNN trained on the training rows, as a scikit-learn transformer.

:class:`DeepFeatures` trains the task's network (a :class:`~oncolabel.networks.CNNClassifier`) with the one
generic :class:`~oncolabel.training.Trainer` and its ``classification`` adapter on exactly the rows given to
``fit`` (inside a cross-validation fold the CNN never sees the fold's test rows). Two outputs:

* ``output="embedding"``: the pooled penultimate activations ``deep:0 .. deep:<k-1>`` (``CNNClassifier.features``).
* ``output="logit"``: the CNN's log-odds of the positive class, ``deep:logit``.

Cross-fitting (``cross_fit=K``): the CNN that scores a *training* row must not have been trained on it, otherwise
the learner downstream sees deep features that already know the row's label (the CNN memorises its training
images) and over-trusts them. With ``K >= 2``, ``fit`` trains ``K`` CNNs on stratified inner folds;
``fit_transform`` gives each training row the logit of the CNN that did not see it, and ``transform`` gives new rows
the mean logit of the ``K`` CNNs (the convention of scikit-learn's ``TargetEncoder``). Only the logit is comparable
across separately trained CNNs, so cross-fitting needs ``output="logit"``. (Measured on the phantom study: with
in-sample embeddings the combined model's CV AUC fell below the radiomics-only model's; see docs/pannet.md.)

Reference: Chernozhukov V et al. Double/debiased machine learning for treatment and structural parameters.
Econom J 2018;21:C1-C68 (cross-fitting); Wolpert DH. Stacked generalization. Neural Netw 1992;5:241-259.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from oncolabel.checkpoint import Checkpoint
from oncolabel.errors import InvalidInputError
from oncolabel.tasks import TaskSpec, get_task
from oncolabel.tasks.base import build_network

__all__ = ["DeepFeatures", "PATH_COLUMNS", "DEEP_PREFIX", "LOGIT_COLUMN", "deep_features", "deep_logits",
           "models_from_checkpoint", "merge_checkpoints"]

PATH_COLUMNS = ("image", "mask")
DEEP_PREFIX = "deep:"
LOGIT_COLUMN = "deep:logit"


def _items(X: pd.DataFrame, y: Any = None) -> list[dict[str, Any]]:  # noqa: N803
    missing = [c for c in PATH_COLUMNS if c not in X.columns]
    if missing:
        raise InvalidInputError(f"deep features need the columns {list(PATH_COLUMNS)}; missing {missing}")
    items = [{"image": str(i), "mask": str(m)} for i, m in zip(X["image"], X["mask"])]
    if y is not None:
        for it, label in zip(items, np.asarray(y)):
            it["label"] = int(label)
    return items


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for a block, then restored."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def merge_checkpoints(ckpts: Sequence[Checkpoint]) -> Checkpoint:
    """One checkpoint holding ``K`` networks of the same architecture (state-dict keys prefixed ``m<k>.``)."""
    if not ckpts:
        raise InvalidInputError("no checkpoint to merge")
    first = ckpts[0]
    state = {f"m{k}.{name}": t for k, c in enumerate(ckpts) for name, t in c.state_dict.items()}
    return replace(first, state_dict=state, training={**first.training, "n_models": len(ckpts),
                                                      "models": [c.training for c in ckpts]})


def models_from_checkpoint(ckpt: Checkpoint) -> list[torch.nn.Module]:
    """The CNN(s) of a checkpoint in eval mode (several when its state-dict keys carry ``m<k>.`` prefixes, as
    :func:`merge_checkpoints` writes them)."""
    groups: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in ckpt.state_dict.items():
        head, _, rest = key.partition(".")
        if not (head[:1] == "m" and head[1:].isdigit() and rest):
            groups = {0: dict(ckpt.state_dict)}
            break
        groups.setdefault(int(head[1:]), {})[rest] = value
    models = []
    for k in sorted(groups):
        model = build_network(ckpt.network["name"], ckpt.network["kwargs"])
        model.load_state_dict(groups[k])
        models.append(model.eval())
    return models


def _batched(model: torch.nn.Module, load: Any, items: Sequence[Mapping[str, Any]], fn: Any,
             batch_size: int = 32) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            x = torch.stack([load(it) for it in items[start:start + batch_size]])
            out.append(fn(model, x).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def deep_features(model: torch.nn.Module, spec: TaskSpec, items: Sequence[Mapping[str, Any]], *,
                  tensors: Any = None, batch_size: int = 32) -> np.ndarray:
    """``model.features`` of each item's preprocessed input, ``(n, n_features)`` (eval mode, no gradients)."""
    return _batched(model, tensors or spec.preprocessing.load, items, lambda m, x: m.features(x), batch_size)


def _log_odds(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    z = model(x)
    return z[:, 1] - z[:, 0]


def deep_logits(model: torch.nn.Module, spec: TaskSpec, items: Sequence[Mapping[str, Any]], *,
                tensors: Any = None, batch_size: int = 32) -> np.ndarray:
    """Log-odds of class 1 against class 0 (``z_1 - z_0`` of the two output logits), ``(n,)``."""
    return _batched(model, tensors or spec.preprocessing.load, items, _log_odds, batch_size)


class DeepFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """CNN deep features of the tumour region, trained on the rows passed to ``fit``.

    Parameters
    ----------
    task : str
        Task whose network, preprocessing and training defaults are used (``pannet_ln``).
    output : {"embedding", "logit"}
        Pooled penultimate activations, or the CNN's log-odds (see module docstring).
    cross_fit : int
        0 or 1: one CNN on all rows. ``K >= 2``: ``K`` CNNs on stratified inner folds, out-of-fold logits in
        ``fit_transform`` (needs ``output="logit"``).
    iterations, batch_size, learning_rate : optional
        Override the task's training defaults.
    seed : int
        Seed of the inner folds and of the training runs.
    device : str
        ``cpu`` or ``cuda``.
    n_threads : int or None
        CPU threads for torch while fitting/transforming (restored afterwards); None leaves torch's setting. One
        thread is the default: this small CNN ran 10x faster with 1 than with 2 threads on a shared 2-core machine
        (0.10 vs 1.07 s per iteration).

    Attributes
    ----------
    checkpoints_ : list of Checkpoint
        The trained network(s) (not written to disk).
    n_deep_features_ : int
    feature_names_in_ : ndarray of str
    """

    def __init__(self, task: str = "pannet_ln", output: str = "embedding", cross_fit: int = 0,
                 iterations: int | None = None, batch_size: int | None = None, learning_rate: float | None = None,
                 seed: int = 0, device: str = "cpu", n_threads: int | None = 1) -> None:
        self.task = task
        self.output = output
        self.cross_fit = cross_fit
        self.iterations = iterations
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.device = device
        self.n_threads = n_threads

    def _spec(self) -> TaskSpec:
        # the score task trains its CNN with the generic trainer's classification adapter
        return replace(get_task(self.task), kind="classification")

    def _check(self, X: Any) -> None:  # noqa: N803
        if self.output not in ("embedding", "logit"):
            raise InvalidInputError(f"output must be 'embedding' or 'logit', got {self.output!r}")
        if self.cross_fit >= 2 and self.output != "logit":
            raise InvalidInputError("cross-fitting needs output='logit': embeddings of separately trained CNNs are "
                                    "not comparable")
        if not isinstance(X, pd.DataFrame):
            raise InvalidInputError("DeepFeatures needs a DataFrame with 'image' and 'mask' path columns")

    def _train(self, items: list[dict[str, Any]], seed: int) -> tuple[torch.nn.Module, Checkpoint, Any]:
        from oncolabel.training import Trainer

        trainer = Trainer(self._spec(), iterations=self.iterations, batch_size=self.batch_size,
                          learning_rate=self.learning_rate, seed=seed, device=self.device)
        ckpt = trainer.fit(items).checkpoint
        model = models_from_checkpoint(ckpt)[0].to(trainer.device)
        return model, ckpt, trainer.adapter

    def _fit(self, X: pd.DataFrame, y: Any) -> np.ndarray | None:  # noqa: N803
        """Train; returns the out-of-fold logits of the rows when cross-fitting."""
        from sklearn.model_selection import StratifiedKFold

        self._check(X)
        yy = np.asarray(y).astype(int)
        items = _items(X, yy)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self._cache: dict[tuple[str, str], torch.Tensor] = {}
        if self.cross_fit < 2:
            model, ckpt, adapter = self._train(items, self.seed)
            self.models_, self.checkpoints_ = [model], [ckpt]
            self._cache = {(it["image"], it["mask"]): adapter.tensor(it) for it in items}
            oof = None
        else:
            folds = StratifiedKFold(int(self.cross_fit), shuffle=True, random_state=self.seed).split(np.zeros(len(yy)),
                                                                                                    yy)
            self.models_, self.checkpoints_ = [], []
            oof = np.full(len(items), np.nan)
            for k, (tr, te) in enumerate(folds):
                model, ckpt, adapter = self._train([items[i] for i in tr], self.seed + k)
                self.models_.append(model)
                self.checkpoints_.append(ckpt)
                self._cache.update({(it["image"], it["mask"]): adapter.tensor(it) for it in (items[i] for i in tr)})
                oof[te] = deep_logits(model, self._spec(), [items[i] for i in te], tensors=self._tensor)
        self.n_deep_features_ = int(self.models_[0].n_features) if self.output == "embedding" else 1
        return oof

    def fit(self, X: pd.DataFrame, y: Any) -> "DeepFeatures":  # noqa: N803 - sklearn API
        with _threads(self.n_threads):
            self._fit(X, y)
        return self

    def fit_transform(self, X: pd.DataFrame, y: Any = None, **fit_params: Any) -> pd.DataFrame:  # noqa: N803
        """Fit, then the features of the fitted rows (out-of-fold logits when cross-fitting)."""
        if y is None:
            raise InvalidInputError("DeepFeatures needs the outcome y to train its CNN")
        with _threads(self.n_threads):
            oof = self._fit(X, y)
        if oof is None:
            return self.transform(X)
        return self._assemble(X, oof[:, None])

    def _tensor(self, item: Mapping[str, Any]) -> torch.Tensor:
        cached = getattr(self, "_cache", {}).get((item["image"], item["mask"]))
        return cached if cached is not None else self._spec().preprocessing.load(item)

    def _assemble(self, X: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:  # noqa: N803
        deep = pd.DataFrame(values, index=X.index, columns=self._names())
        return pd.concat([X.drop(columns=list(PATH_COLUMNS)), deep], axis=1)

    def _names(self) -> list[str]:
        if self.output == "logit":
            return [LOGIT_COLUMN]
        return [f"{DEEP_PREFIX}{k}" for k in range(self.n_deep_features_)]

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        """``X`` without the path columns, plus the deep feature column(s) (mean logit over the CNNs)."""
        check_is_fitted(self, "checkpoints_")
        items = _items(X)
        spec = self._spec()
        with _threads(self.n_threads):
            if self.output == "logit":
                vals = np.mean([deep_logits(m, spec, items, tensors=self._tensor) for m in self.models_],
                               axis=0)[:, None]
            else:
                vals = deep_features(self.models_[0], spec, items, tensors=self._tensor)
        return self._assemble(X, vals)

    def checkpoint(self) -> Checkpoint:
        """The trained CNN(s) as one checkpoint (:func:`merge_checkpoints` when there are several)."""
        check_is_fitted(self, "checkpoints_")
        return self.checkpoints_[0] if len(self.checkpoints_) == 1 else merge_checkpoints(self.checkpoints_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "checkpoints_")
        kept = [c for c in self.feature_names_in_ if c not in PATH_COLUMNS]
        return np.asarray(kept + self._names(), dtype=object)
