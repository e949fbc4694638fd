"""Task specs: one frozen description per clinical task.

A spec names the task, its labels, its network and its preprocessing; the generic trainer
(:mod:`oncolabel.training`), the predictors (:mod:`oncolabel.inference`), the CLI and the MONAI Label app
all read the task from its spec, so a setting lives in exactly one place.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping

from torch import nn

from oncolabel.errors import UnknownTaskError


@dataclass(frozen=True)
class NetworkSpec:
    """Which network class and with which keyword arguments (MONAI convention)."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        return build_network(self.name, self.kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs)}


def build_network(name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Instantiate a network by registered name (no ``eval`` of class names)."""
    from oncolabel.networks import NETWORKS as registry

    if name not in registry:
        raise UnknownTaskError(f"unknown network {name!r}; known: {', '.join(sorted(registry))}")
    return registry[name](**dict(kwargs))


@dataclass(frozen=True)
class TrainingSpec:
    """Default training settings of a task (overridable per run)."""

    max_iterations: int = 2000
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    validate_every: int = 250
    finetune_iterations: int = 150
    finetune_learning_rate: float = 5e-4
    seed: int = 0
    #: segmentation: weight of an extra cross-entropy term on small lesion cross-sections
    #: (:class:`oncolabel.training.LesionSizeWeightedDiceCE`); 0 = Dice + cross-entropy alone
    lesion_size_weight: float = 0.0
    #: segmentation: share of the lesion-slice samples drawn lesion-balanced (a lesion uniformly, then its small
    #: cross-sections favoured; :class:`oncolabel.training.SliceSampler`); 0 = lesion slices uniformly per volume
    lesion_sampling_fraction: float = 0.0


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines one clinical task.

    Attributes:
        name: server / model name (``bone_metastasis``).
        cli_name: command-line name (``bone-metastasis``).
        kind: ``segmentation``, ``classification`` or ``score``.
        description: one line for users.
        labels: label name -> integer value (background 0 for segmentation).
        network: the network.
        preprocessing: the task's preprocessing object (one class per task family; must offer ``to_dict``).
        training: default training settings.
        postprocessing: the task's postprocessing object (``to_dict``), or None.
        default_model: package resource name of the shipped checkpoint (in ``oncolabel/models``), or None.
        assumed_input_spacing_mm: for a segmentation checkpoint that records no training-image spacing
            (:meth:`oncolabel.checkpoint.Checkpoint.input_spacing`), the ``{"inplane": (lo, hi), "slice": (lo, hi)}``
            range (mm) of the images it was trained on (the shipped models: the phantom generator's defaults), or None.
    """

    name: str
    cli_name: str
    kind: str
    description: str
    labels: Mapping[str, int]
    network: NetworkSpec
    preprocessing: Any
    training: TrainingSpec = TrainingSpec()
    postprocessing: Any = None
    default_model: str | None = None
    assumed_input_spacing_mm: Mapping[str, tuple[float, float]] | None = None

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable settings (for provenance)."""
        return {"task": self.name, "labels": dict(self.labels), "network": self.network.to_dict(),
                "preprocessing": self.preprocessing.to_dict(), "training": asdict(self.training),
                "postprocessing": self.postprocessing.to_dict() if self.postprocessing is not None else None}


_REGISTRY: dict[str, Callable[[], TaskSpec]] = {}


def register_task(name: str) -> Callable[[Callable[[], TaskSpec]], Callable[[], TaskSpec]]:
    """Decorator registering a zero-argument spec factory under ``name``."""

    def deco(factory: Callable[[], TaskSpec]) -> Callable[[], TaskSpec]:
        _REGISTRY[name] = factory
        return factory

    return deco


def spec_variant(spec: TaskSpec, *, preprocessing: Mapping[str, Any] | None = None,
                 network: Mapping[str, Any] | None = None, training: Mapping[str, Any] | None = None) -> TaskSpec:
    """``spec`` with some preprocessing fields, network keyword arguments and training defaults replaced (for
    experiments that compare settings; a shipped setting belongs in the task's own spec)."""
    prep = replace(spec.preprocessing, **preprocessing) if preprocessing else spec.preprocessing
    net = NetworkSpec(spec.network.name, {**spec.network.kwargs, **network}) if network else spec.network
    train = replace(spec.training, **training) if training else spec.training
    return replace(spec, preprocessing=prep, network=net, training=train)


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def get_task(name: str) -> TaskSpec:
    """The spec of ``name`` (``bone_metastasis`` or ``bone-metastasis``).

    Raises:
        UnknownTaskError: with a "did you mean" suggestion.
    """
    key = name.replace("-", "_")
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0].replace('_', '-')!r}?" if close else ""
        raise UnknownTaskError(f"unknown task {name!r}{hint} (known: {', '.join(n.replace('_', '-') for n in task_names())})")
    return _REGISTRY[key]()
