"""Deep features: a task's CNN trained on the training rows, its pooled penultimate activations as features.

:class:`DeepFeatures` is a scikit-learn transformer. ``fit`` trains the task's network (a
:class:`~oncolabel.networks.CNNClassifier`) with the one generic :class:`~oncolabel.training.Trainer` and its
``classification`` adapter on exactly the rows it is given, so inside a cross-validation fold the CNN never sees
the fold's test rows. ``transform`` appends ``deep:<k>`` columns (``CNNClassifier.features``) and drops the
image/mask path columns.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from oncolabel.checkpoint import Checkpoint
from oncolabel.errors import InvalidInputError
from oncolabel.tasks import TaskSpec, get_task
from oncolabel.tasks.base import build_network

__all__ = ["DeepFeatures", "PATH_COLUMNS", "DEEP_PREFIX", "deep_features", "model_from_checkpoint"]

PATH_COLUMNS = ("image", "mask")
DEEP_PREFIX = "deep:"


def _items(X: pd.DataFrame, y: Any = None) -> list[dict[str, Any]]:  # noqa: N803
    missing = [c for c in PATH_COLUMNS if c not in X.columns]
    if missing:
        raise InvalidInputError(f"deep features need the columns {list(PATH_COLUMNS)}; missing {missing}")
    items = [{"image": str(i), "mask": str(m)} for i, m in zip(X["image"], X["mask"])]
    if y is not None:
        for it, label in zip(items, np.asarray(y)):
            it["label"] = int(label)
    return items


def model_from_checkpoint(ckpt: Checkpoint) -> torch.nn.Module:
    """The CNN of a checkpoint in eval mode."""
    model = build_network(ckpt.network["name"], ckpt.network["kwargs"])
    model.load_state_dict(ckpt.state_dict)
    return model.eval()


def deep_features(model: torch.nn.Module, spec: TaskSpec, items: Sequence[Mapping[str, Any]], *,
                  tensors: Any = None, batch_size: int = 32) -> np.ndarray:
    """``model.features`` of each item's preprocessed input, ``(n, n_features)`` (eval mode, no gradients).

    ``tensors`` may be a callable ``item -> Tensor`` (e.g. the trainer adapter's cache); default: the task's
    preprocessing ``load``.
    """
    load = tensors or spec.preprocessing.load
    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            x = torch.stack([load(it) for it in items[start:start + batch_size]])
            out.append(model.features(x).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class DeepFeatures(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """CNN deep features of the tumour region, trained on the rows passed to ``fit``.

    Parameters
    ----------
    task : str
        Task whose network, preprocessing and training defaults are used (``pannet_ln``).
    iterations, batch_size, learning_rate : optional
        Override the task's training defaults.
    seed : int
        Seed of the training run.
    device : str
        ``cpu`` or ``cuda``.

    Attributes
    ----------
    checkpoint_ : Checkpoint
        The trained network (not written to disk).
    n_deep_features_ : int
    feature_names_in_ : ndarray of str
    """

    def __init__(self, task: str = "pannet_ln", iterations: int | None = None, batch_size: int | None = None,
                 learning_rate: float | None = None, seed: int = 0, device: str = "cpu") -> None:
        self.task = task
        self.iterations = iterations
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.device = device

    def _spec(self) -> TaskSpec:
        # the score task trains its CNN with the generic trainer's classification adapter
        return replace(get_task(self.task), kind="classification")

    def fit(self, X: pd.DataFrame, y: Any) -> "DeepFeatures":  # noqa: N803 - sklearn API
        from oncolabel.training import Trainer

        if not isinstance(X, pd.DataFrame):
            raise InvalidInputError("DeepFeatures needs a DataFrame with 'image' and 'mask' path columns")
        items = _items(X, y)
        trainer = Trainer(self._spec(), iterations=self.iterations, batch_size=self.batch_size,
                          learning_rate=self.learning_rate, seed=self.seed, device=self.device)
        result = trainer.fit(items)
        self.checkpoint_ = result.checkpoint
        self.model_ = model_from_checkpoint(result.checkpoint).to(trainer.device)
        self._cache = {(it["image"], it["mask"]): trainer.adapter.tensor(it) for it in items}
        self.n_deep_features_ = int(self.model_.n_features)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        return self

    def _tensor(self, item: Mapping[str, Any]) -> torch.Tensor:
        key = (item["image"], item["mask"])
        cached = getattr(self, "_cache", {}).get(key)
        return cached if cached is not None else self._spec().preprocessing.load(item)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        """``X`` without the path columns, plus ``deep:0 .. deep:<k-1>``."""
        check_is_fitted(self, "checkpoint_")
        feats = deep_features(self.model_, self._spec(), _items(X), tensors=self._tensor)
        deep = pd.DataFrame(feats, index=X.index, columns=[f"{DEEP_PREFIX}{k}" for k in range(feats.shape[1])])
        return pd.concat([X.drop(columns=list(PATH_COLUMNS)), deep], axis=1)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "checkpoint_")
        kept = [c for c in self.feature_names_in_ if c not in PATH_COLUMNS]
        return np.asarray(kept + [f"{DEEP_PREFIX}{k}" for k in range(self.n_deep_features_)], dtype=object)
