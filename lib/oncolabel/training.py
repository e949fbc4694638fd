"""One generic trainer, driven by a task spec.

:class:`Trainer` owns the loop (seeding, optimiser, cosine learning-rate schedule, validation, best-model
selection, cancellation, progress callbacks, checkpoint metadata). What differs between task families lives in
a small *adapter* chosen from ``spec.kind``: how batches are sampled, the loss, and the validation score.
Segmentation uses :class:`SegmentationAdapter`; classification tasks register their own adapter with
:func:`register_adapter` and reuse the same loop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import SimpleITK as sitk
import torch
from monai.losses import DiceCELoss
from scipy import ndimage
from torch import nn

from oncolabel.checkpoint import Checkpoint, merge_input_spacing, save_checkpoint
from oncolabel.classification import TARGET_KEYS, fused_logits
from oncolabel.errors import InvalidInputError
from oncolabel.io import check_label_values, mask_on_grid, read_image
from oncolabel.precision import as_float32, autocast, resolve_precision
from oncolabel.preprocessing import CTSlicePreprocessing, PreparedVolume
from oncolabel.provenance import package_versions
from oncolabel.tasks import TaskSpec
from oncolabel.tasks.base import spec_variant
from oncolabel.tasks.base import build_network
from oncolabel.transforms import RandInplaneZoom

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "TrainResult", "SegmentationAdapter", "SliceSampler", "register_adapter", "TrainingCancelled",
           "LesionSizeWeightedDiceCE", "lesion_size_weights", "LesionSlices", "find_lesions"]


class TrainingCancelled(Exception):
    """Raised inside :meth:`Trainer.fit` when its ``stop_event`` is set."""


class Adapter(Protocol):
    """What the generic loop needs from a task family."""

    def batches(self, items: Sequence[Mapping[str, Any]], batch_size: int,
                rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def loss(self) -> nn.Module: ...

    def validate(self, model: nn.Module, items: Sequence[Mapping[str, Any]], device: torch.device) -> dict[str, float]:
        """Validation metrics; must contain ``score`` (higher is better)."""
        ...

    # optional: ``describe(items) -> dict`` - what the checkpoint records about the training images (merged into its
    # ``training`` record; e.g. the segmentation adapter's ``input_spacing_mm``)


_ADAPTERS: dict[str, Callable[[TaskSpec], Adapter]] = {}


def register_adapter(kind: str) -> Callable[[Callable[[TaskSpec], Adapter]], Callable[[TaskSpec], Adapter]]:
    def deco(factory: Callable[[TaskSpec], Adapter]) -> Callable[[TaskSpec], Adapter]:
        _ADAPTERS[kind] = factory
        return factory
    return deco


@dataclass
class TrainResult:
    """The trained checkpoint (not yet written) and the run's history."""

    checkpoint: Checkpoint
    history: list[dict[str, Any]] = field(default_factory=list)
    best_iteration: int = 0
    seconds: float = 0.0


def _identities(item: Mapping[str, Any]) -> set[tuple[str, str]]:
    """What makes two items the same case: their input files (resolved) and any case or patient id they carry."""
    out = {(key, str(item[key])) for key in ("case_id", "patient_id") if item.get(key) is not None}
    for key, value in item.items():
        if key not in TARGET_KEYS and isinstance(value, (str, Path)) and Path(value).is_file():
            out.add(("file", str(Path(value).resolve())))
    return out


def _check_disjoint(train_items: Sequence[Mapping[str, Any]], val_items: Sequence[Mapping[str, Any]]) -> None:
    seen = set().union(*(_identities(it) for it in train_items))
    shared = sorted({f"{kind} {value}" for it in val_items for kind, value in _identities(it) & seen})
    if shared:
        raise InvalidInputError(f"{len(shared)} validation input(s) are also training inputs ({'; '.join(shared[:3])}"
                                f"{'...' if len(shared) > 3 else ''}): a checkpoint chosen on them is judged on cases "
                                "it learnt from; give a separate validation cohort (split by patient)")


class Trainer:
    """Train (or fine-tune) the network of ``spec``.

    Args:
        spec: the task.
        iterations, batch_size, learning_rate, weight_decay, validate_every: override ``spec.training``.
        init: checkpoint to warm-start from (fine-tuning); its weights and its sha256 (recorded as parent).
        init_other_preprocessing: allow ``init`` to have been trained with other preprocessing than ``spec``'s
            (e.g. another working pixel size, which the zoom augmentation prepares a network for); its
            preprocessing is recorded in the training settings. Off: such a warm start is an error.
        device: ``cpu`` / ``cuda``.
        seed: seeds numpy and torch for this run.
        stop_event: set it from another thread to cancel; :meth:`fit` then raises :class:`TrainingCancelled`.
        progress: called with a dict after every logged step (``iteration``, ``loss``, and validation metrics).
        save_best_to: if given, the best checkpoint so far is written there (atomically) after every validation
            that improves, so an interrupted run still leaves its best model.
        precision: ``fp32`` (default) or ``bf16`` autocast for the forward passes of training and validation
            (weights, optimiser and loss stay float32), or ``auto`` (:mod:`oncolabel.precision`); recorded in the
            checkpoint's training settings.
    """

    def __init__(self, spec: TaskSpec, *, iterations: int | None = None, batch_size: int | None = None,
                 learning_rate: float | None = None, weight_decay: float | None = None,
                 validate_every: int | None = None, init: Checkpoint | None = None,
                 device: str | torch.device = "cpu", seed: int | None = None,
                 stop_event: threading.Event | None = None,
                 progress: Callable[[dict[str, Any]], None] | None = None,
                 save_best_to: str | Path | None = None, precision: str = "fp32",
                 init_other_preprocessing: bool = False) -> None:
        t = spec.training
        self.spec = spec
        self.iterations = int(iterations if iterations is not None else t.max_iterations)
        self.batch_size = int(batch_size or t.batch_size)
        self.learning_rate = float(learning_rate or t.learning_rate)
        self.weight_decay = float(weight_decay if weight_decay is not None else t.weight_decay)
        self.validate_every = int(validate_every or t.validate_every)
        self.seed = int(seed if seed is not None else t.seed)
        self.init = init
        self.init_other_preprocessing = bool(init_other_preprocessing)
        from oncolabel.inference import resolve_device

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.stop_event = stop_event
        self.progress = progress
        self.save_best_to = Path(save_best_to) if save_best_to else None
        if self.iterations < 1:
            raise InvalidInputError(f"iterations={self.iterations}: must be >= 1")
        if spec.kind not in _ADAPTERS:
            raise InvalidInputError(f"no training adapter for task kind {spec.kind!r}")
        self.adapter = _ADAPTERS[spec.kind](spec)

    def settings(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay, "validate_every": self.validate_every, "seed": self.seed,
                "device": str(self.device), "precision": self.precision, "init_sha256": self.init.sha256 if self.init else None,
                **({"lesion_size_weight": self.spec.training.lesion_size_weight}
                   if self.spec.training.lesion_size_weight else {}),
                **({"lesion_sampling_fraction": self.spec.training.lesion_sampling_fraction}
                   if self.spec.training.lesion_sampling_fraction else {}),
                **({"init_preprocessing": dict(self.init.preprocessing)} if self._init_differs() else {})}

    def _init_differs(self) -> bool:
        return self.init is not None and not self.init.preprocessing_matches(self.spec.preprocessing)

    def _model(self) -> nn.Module:
        net = self.init.network if self.init else self.spec.network.to_dict()
        model = build_network(net["name"], net["kwargs"])
        if self.init is not None:
            if self._init_differs() and not self.init_other_preprocessing:
                raise InvalidInputError(
                    f"the warm-start checkpoint was trained with other preprocessing ({dict(self.init.preprocessing)}) "
                    f"than the task spec ({self.spec.preprocessing.to_dict()}); allow it explicitly "
                    "(init_other_preprocessing / --init-other-preprocessing) to adapt the network")
            model.load_state_dict(self.init.state_dict)
        return model.to(self.device)

    def _describe(self, train_items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The adapter's record of the training images (if it keeps one); the training-image spacing range also
        covers the warm-start checkpoint's own (the network has seen both)."""
        describe = getattr(self.adapter, "describe", None)
        record = dict(describe(train_items)) if describe is not None else {}
        if "input_spacing_mm" in record:
            parent = self.init.input_spacing(self.spec.assumed_input_spacing_mm) if self.init else None
            merged = merge_input_spacing(record["input_spacing_mm"], parent)
            record["input_spacing_mm"] = {k: [round(v, 4) for v in r] for k, r in merged.items()}
        return record

    def _checkpoint(self, state: Mapping[str, torch.Tensor], metrics: Mapping[str, Any], best_it: int, n_train: int,
                    n_val: int, history: list[dict[str, Any]], record: Mapping[str, Any]) -> Checkpoint:
        return Checkpoint(task=self.spec.name,
                          network=self.init.network if self.init else self.spec.network.to_dict(),
                          preprocessing=self.spec.preprocessing.to_dict(), state_dict=state,
                          metrics={f"val_{k}": v for k, v in metrics.items()},
                          training={**self.settings(), "n_train": n_train, "n_val": n_val, "best_iteration": best_it,
                                    "history_tail": history[-5:], **record},
                          parent_sha256=self.init.sha256 if self.init else None,
                          software=package_versions(("torch", "monai", "numpy")),
                          # a fine-tuned model keeps its parent's false-positive filter (fitted on the parent's
                          # outputs; the filter records which model that was); refit with `oncolabel fit-filter`
                          component_filter=self.init.component_filter if self.init else None)

    def _recalibrate(self, model: nn.Module, train_items: Sequence[Mapping[str, Any]], it: int) -> None:
        """Let the adapter re-estimate normalisation statistics on inference-like inputs (if it knows how).

        Batch-norm running statistics are averaged over training batches, which an adapter may sample differently
        from what inference sees (segmentation: lesion-centred patches vs whole slices); the weights are unchanged.
        Uses its own random stream, so training itself does not depend on how often it validates.
        """
        recalibrate = getattr(self.adapter, "recalibrate", None)
        if recalibrate is not None:
            recalibrate(model, train_items, np.random.default_rng([self.seed, it]), self.device)

    def _report(self, record: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress(record)

    def fit(self, train_items: Sequence[Mapping[str, Any]],
            val_items: Sequence[Mapping[str, Any]] | None = None) -> TrainResult:
        """Run the loop; returns the best checkpoint by validation ``score`` (the last one without validation).

        Raises :class:`InvalidInputError` when a validation item is also a training item (the same file, case id or
        patient id): the checkpoint would be chosen on cases it learnt from."""
        if not train_items:
            raise InvalidInputError("no training items: label at least one case first")
        _check_disjoint(train_items, val_items or [])
        start = time.time()
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        model = self._model()
        loss_fn = self.adapter.loss()
        opt = torch.optim.AdamW(model.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        warm = min(50, self.iterations // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / max(1, warm)) * 0.5 * (
            1 + math.cos(math.pi * min(i, self.iterations) / self.iterations)))
        history: list[dict[str, Any]] = []
        best_score, best_state, best_it, best_metrics = -math.inf, None, 0, {}
        batches = self.adapter.batches(train_items, self.batch_size, rng)
        record = self._describe(train_items)
        running = 0.0
        for it in range(1, self.iterations + 1):
            if self.stop_event is not None and self.stop_event.is_set():
                raise TrainingCancelled(f"training cancelled at iteration {it - 1} of {self.iterations}")
            model.train()
            x, y = next(batches)
            x = x.to(self.device)
            if x.ndim == 4 and getattr(self.adapter, "channels_last", True):  # 2D only; an adapter may opt out
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with autocast(self.precision, self.device):
                out = model(x)
            loss = loss_fn(as_float32(out), y.to(self.device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at iteration {it}")
            loss.backward()
            opt.step()
            sched.step()
            running = loss.item() if it == 1 else 0.95 * running + 0.05 * loss.item()
            last = it == self.iterations
            validate_now = bool(val_items) and (it % self.validate_every == 0 or last)
            if it % 25 == 0 or last or validate_now:
                rec = {"iteration": it, "loss": round(running, 5), "lr": sched.get_last_lr()[0],
                       "seconds": round(time.time() - start, 1)}
                if validate_now:
                    with autocast(self.precision, self.device):
                        self._recalibrate(model, train_items, it)
                        metrics = self.adapter.validate(model, val_items, self.device)
                    rec.update({f"val_{k}": v for k, v in metrics.items()})
                    if metrics["score"] > best_score:
                        best_score, best_it, best_metrics = metrics["score"], it, metrics
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                        if self.save_best_to is not None:
                            save_checkpoint(self._checkpoint(best_state, best_metrics, best_it, len(train_items),
                                                             len(val_items), history, record), self.save_best_to)
                history.append(rec)
                logger.info("train %s: %s", self.spec.name, rec)
                self._report(rec)
        if best_state is None:  # no validation: keep the final weights
            with autocast(self.precision, self.device):
                self._recalibrate(model, train_items, self.iterations)
            best_state, best_it = model.state_dict(), self.iterations
        ckpt = self._checkpoint(best_state, best_metrics, best_it, len(train_items), len(val_items or []), history,
                                record)
        return TrainResult(checkpoint=ckpt, history=history, best_iteration=best_it, seconds=time.time() - start)


# --- segmentation ---------------------------------------------------------------------------------------------


@dataclass
class _Volume:
    prepared: PreparedVolume
    label: torch.Tensor
    positive: np.ndarray
    lesions: list["LesionSlices"] = field(default_factory=list)
    spacing_zyx: tuple[float, float, float] = (0.0, 0.0, 0.0)  # on the canonical axes


@dataclass(frozen=True)
class LesionSlices:
    """One labelled lesion (3D connected component) of a prepared volume, for lesion-balanced sampling.

    ``z``: its slices; ``area``: its cross-section on each (pixels); ``points``: ``(len(z), k, 2)`` pixel
    coordinates (y, x) inside the cross-section, evenly spread over its pixels, to centre patches on.
    """

    z: np.ndarray
    area: np.ndarray
    points: np.ndarray

    def slice_weights(self, reference_px: float, *, gamma: float = 0.5, max_weight: float = 8.0) -> np.ndarray:
        """Probability of each slice: ``clip((reference_px / area) ** gamma, 1, max_weight)``, normalised; a lesion's
        small cross-sections (its ends, or all of a small lesion) are drawn up to ``max_weight`` times as often as its
        large ones, as :func:`lesion_size_weights` weights their pixels in the loss."""
        w = cross_section_weight(self.area, reference_px=reference_px, gamma=gamma, max_weight=max_weight)
        return w / w.sum()


def find_lesions(label: np.ndarray, *, k: int = 16) -> list[LesionSlices]:
    """The 3D connected components (26-connected) of a ``(z, y, x)`` binary label, each as :class:`LesionSlices`."""
    label = np.asarray(label) > 0
    if not label.any():
        return []
    box = ndimage.find_objects(label.view(np.uint8))[0]  # label only the lesions' bounding box
    lo = [b.start for b in box]
    comp, n = ndimage.label(label[box], structure=np.ones((3, 3, 3), bool))
    out = []
    for i, sl in enumerate(ndimage.find_objects(comp), start=1):
        zs, areas, points = [], [], []
        for dz in range(sl[0].start, sl[0].stop):
            yy, xx = np.nonzero(comp[dz, sl[1], sl[2]] == i)
            if not yy.size:
                continue
            pick = np.linspace(0, yy.size - 1, k).round().astype(int)
            zs.append(dz + lo[0])
            areas.append(yy.size)
            points.append(np.stack([yy[pick] + sl[1].start + lo[1], xx[pick] + sl[2].start + lo[2]], axis=1))
        out.append(LesionSlices(np.asarray(zs), np.asarray(areas, np.float64), np.stack(points)))
    return out


def load_volume(item: Mapping[str, Any], prep: CTSlicePreprocessing) -> tuple[sitk.Image, PreparedVolume, torch.Tensor]:
    """Read an ``{"image", "label"}`` item and put both on the working grid (the one preprocessing)."""
    img = read_image(item["image"])
    lab = read_image(item["label"])
    lab = mask_on_grid(img, lab, what=f"label {item['label']}")
    check_label_values(sitk.GetArrayViewFromImage(lab), what=f"label {item['label']}")
    prepared = prep.prepare_image(img)
    label = prep.prepare_label((sitk.GetArrayViewFromImage(lab) > 0).astype(np.uint8), prepared)
    return img, prepared, label


class SliceSampler:
    """Random training batches of slices (2D / 2.5D) from prepared volumes.

    Half of the samples (``positive_fraction``) come from slices that contain lesion; patches of ``patch`` pixels
    are centred on a lesion pixel for those. Of these, ``lesion_fraction`` are lesion-balanced: a lesion (3D
    component, :func:`find_lesions`) drawn uniformly over all volumes, then one of its slices by
    :meth:`LesionSlices.slice_weights` (small cross-sections favoured), the patch centred on that lesion; the rest
    draw a volume with lesion, then one of its lesion slices, uniformly (large lesions, having more slices and
    pixels, dominate those). Patches without lesion are centred on bone (HU above ``bone_hu``) with probability
    ``bone_fraction``, elsewhere at random: the mimics that cost PPV (bone islands, sclerosis, Schmorl nodes) are in
    bone, which a random patch of the body often misses. Augmentation on top of the deterministic preprocessing:
    in-plane zoom (log-uniform in ``zoom``, i.e. pixel sizes from about 0.7 to 1.7 mm), left-right flip, intensity
    scale/shift, Gaussian noise.
    With ``augment=False`` a sample equals the inference input of that slice exactly.
    """

    def __init__(self, prep: CTSlicePreprocessing, volumes: Sequence[_Volume], *, patch: int = 160,
                 positive_fraction: float = 0.5, zoom: tuple[float, float] = (0.75, 1.8), augment: bool = True,
                 bone_fraction: float = 0.5, bone_hu: float = 250.0, lesion_fraction: float = 0.0,
                 reference_px: float | None = None) -> None:
        if not 0.0 <= lesion_fraction <= 1.0:
            raise InvalidInputError(f"lesion_fraction={lesion_fraction}: must be in [0, 1]")
        self.prep, self.volumes, self.patch = prep, list(volumes), patch
        self.positive_fraction, self.augment = positive_fraction, augment
        self.lesion_fraction = lesion_fraction
        ref = reference_px if reference_px is not None else lesion_reference_px(prep)
        self._lesions = [(v, les, les.slice_weights(ref)) for v in self.volumes for les in v.lesions]
        self.bone_fraction = bone_fraction
        self._bone_level = (bone_hu - prep.hu_low) / (prep.hu_high - prep.hu_low)  # in window units
        self.zoom = RandInplaneZoom((math.log(zoom[0]), math.log(zoom[1])))
        self.zoom_label = RandInplaneZoom((0, 0), mode="nearest")
        self._pos = [i for i, v in enumerate(self.volumes) if v.positive.size]

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        centre = None  # (y, x) of the drawn lesion, for a lesion-balanced sample
        if self._pos and rng.random() < self.positive_fraction:
            if self.lesion_fraction and self._lesions and rng.random() < self.lesion_fraction:
                v, les, weights = self._lesions[rng.integers(len(self._lesions))]
                s = int(rng.choice(les.z.size, p=weights))
                z = int(les.z[s])
                centre = les.points[s][rng.integers(les.points.shape[1])].astype(np.float64)
            else:
                v = self.volumes[self._pos[rng.integers(len(self._pos))]]
                z = int(v.positive[rng.integers(v.positive.size)])
        else:
            v = self.volumes[rng.integers(len(self.volumes))]
            z = int(rng.integers(v.label.shape[0]))
        x = self.prep.slices(v.prepared, [z])[0]  # (C, h, w) -- identical to inference input
        y = v.label[z]
        if self.augment:
            h, w = y.shape
            f = math.exp(self.zoom.randomize(rng))
            self.zoom.factor = self.zoom_label.factor = f
            x, y = self.zoom(x, randomize=False), self.zoom_label(y, randomize=False)
            if centre is not None:  # the same point on the zoomed slice (pixel centres scale about the corner)
                centre = (centre + 0.5) * (np.array(y.shape) / (h, w)) - 0.5
            if rng.random() < 0.5:
                x, y = torch.flip(x, (-1,)), torch.flip(y, (-1,))
                if centre is not None:
                    centre[1] = y.shape[1] - 1 - centre[1]
            x = x * float(rng.uniform(0.92, 1.08)) + float(rng.uniform(-0.03, 0.03))
            x = x + float(rng.uniform(0, 0.02)) * torch.randn_like(x)
        return self._crop(x, y, rng, centre=centre)

    def _crop(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, *,
              centre: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.patch
        h, w = y.shape
        if h < p or w < p:  # pad to at least patch size (background: window minimum = 0)
            ph, pw = max(0, p - h), max(0, p - w)
            x = torch.nn.functional.pad(x, (0, pw, 0, ph))
            y = torch.nn.functional.pad(y, (0, pw, 0, ph))
            h, w = y.shape
        fg = torch.nonzero(y) if centre is None else None
        bone = None
        if centre is None and not fg.shape[0] and rng.random() < self.bone_fraction:
            bone = torch.nonzero(x[x.shape[0] // 2] > self._bone_level)
        if centre is not None:
            cy, cx = (int(round(c)) for c in centre)
            cy += int(rng.integers(-p // 3, p // 3 + 1))
            cx += int(rng.integers(-p // 3, p // 3 + 1))
        elif fg.shape[0] and rng.random() < 0.8:
            cy, cx = fg[rng.integers(fg.shape[0])].tolist()
            cy += int(rng.integers(-p // 3, p // 3 + 1))
            cx += int(rng.integers(-p // 3, p // 3 + 1))
        elif bone is not None and bone.shape[0]:
            cy, cx = bone[rng.integers(bone.shape[0])].tolist()
            cy += int(rng.integers(-p // 4, p // 4 + 1))
            cx += int(rng.integers(-p // 4, p // 4 + 1))
        else:
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0 = int(np.clip(cy - p // 2, 0, h - p))
        x0 = int(np.clip(cx - p // 2, 0, w - p))
        return x[:, y0:y0 + p, x0:x0 + p], y[y0:y0 + p, x0:x0 + p]

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            xs, ys = zip(*(self.sample(rng) for _ in range(batch_size)))
            yield torch.stack(xs), torch.stack(ys).long().unsqueeze(1)


#: cross-section area (mm^2) from which a lesion gets no extra weight in :class:`LesionSizeWeightedDiceCE`
LESION_REFERENCE_MM2 = 200.0


def lesion_reference_px(prep: CTSlicePreprocessing) -> float:
    """:data:`LESION_REFERENCE_MM2` in working pixels of ``prep``."""
    return LESION_REFERENCE_MM2 / prep.spacing_mm ** 2


def cross_section_weight(area: np.ndarray, *, reference_px: float, gamma: float = 0.5,
                         max_weight: float = 8.0) -> np.ndarray:
    """How much a lesion cross-section of ``area`` pixels counts against one of ``reference_px`` or more:
    ``clip((reference_px / area) ** gamma, 1, max_weight)`` (the loss's extra weight and the sampler's slice odds)."""
    return np.clip((reference_px / np.asarray(area, np.float64)) ** gamma, 1.0, max_weight)


def lesion_size_weights(target: np.ndarray, *, reference_px: float, gamma: float = 0.5,
                        max_weight: float = 8.0) -> np.ndarray:
    """Per-pixel extra weight of ``(batch, h, w)`` binary targets: ``clip((reference_px / area) ** gamma, 1,
    max_weight) - 1`` on the pixels of each 2D lesion cross-section of ``area`` pixels (4-connected), 0 elsewhere.
    """
    out = np.zeros(target.shape, np.float32)
    for b in range(target.shape[0]):
        lab, n = ndimage.label(target[b] > 0)
        if n:
            area = np.bincount(lab.ravel())[1:]
            w = cross_section_weight(area, reference_px=reference_px, gamma=gamma, max_weight=max_weight) - 1.0
            inside = lab > 0
            out[b][inside] = w[lab[inside] - 1]
    return out


class LesionSizeWeightedDiceCE(nn.Module):
    """Dice + cross-entropy (batch Dice, as the plain loss) plus ``weight`` times a cross-entropy term restricted to
    small lesion cross-sections, weighted by :func:`lesion_size_weights`.

    Batch Dice and pixel-wise cross-entropy are dominated by large lesions; the first and last slices of a lesion
    and lesions of 4-8 mm, where the network missed most slices (docs/bone_metastasis.md), contribute a few pixels
    each. With the defaults a cross-section of ``reference_px / 16`` pixels gets an extra weight of 3 per pixel, one
    of ``reference_px`` pixels or more none, at most ``max_weight - 1``; background pixels get none. The shipped
    bone-metastasis model's last fine-tune used weight 1 (docs/bone_metastasis.md).
    """

    def __init__(self, weight: float, *, reference_px: float, gamma: float = 0.5, max_weight: float = 8.0) -> None:
        super().__init__()
        if weight < 0 or reference_px <= 0 or max_weight < 1:
            raise InvalidInputError(f"lesion size weighting needs weight >= 0, reference_px > 0, max_weight >= 1; "
                                    f"got {weight}, {reference_px}, {max_weight}")
        self.base = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
        self.weight, self.reference_px, self.gamma, self.max_weight = weight, reference_px, gamma, max_weight

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch's name
        loss = self.base(input, target)
        w = lesion_size_weights(target[:, 0].cpu().numpy(), reference_px=self.reference_px, gamma=self.gamma,
                                max_weight=self.max_weight)
        if self.weight > 0 and w.any():
            ce = nn.functional.cross_entropy(input, target[:, 0], reduction="none")
            loss = loss + self.weight * (torch.from_numpy(w).to(ce.device) * ce).mean()
        return loss


@register_adapter("segmentation")
class SegmentationAdapter:
    """Segmentation: slice sampling, Dice + cross-entropy loss, validation by Dice and slice-wise F1."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self._cache: dict[tuple[str, str], _Volume] = {}

    def volumes(self, items: Sequence[Mapping[str, Any]]) -> list[_Volume]:
        out = []
        for item in items:
            key = (str(item["image"]), str(item["label"]))
            if key not in self._cache:
                img, prepared, label = load_volume(item, self.spec.preprocessing)
                positive = np.nonzero(label.flatten(1).any(1).numpy())[0]
                lesions = find_lesions(label.numpy()) if self.spec.training.lesion_sampling_fraction else []
                spacing = tuple(float(s) for s in prepared.orientation.spacing_zyx(img))
                self._cache[key] = _Volume(prepared, label, positive, lesions, spacing)
            out.append(self._cache[key])
        return out

    def describe(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``input_spacing_mm``: the range of the training images' in-plane pixel and slice spacing (what the
        predictor warns outside of)."""
        sp = np.asarray([v.spacing_zyx for v in self.volumes(items)])
        return {"input_spacing_mm": {"inplane": [float(sp[:, 1:].min()), float(sp[:, 1:].max())],
                                     "slice": [float(sp[:, 0].min()), float(sp[:, 0].max())]}}

    def batches(self, items: Sequence[Mapping[str, Any]], batch_size: int,
                rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return SliceSampler(self.spec.preprocessing, self.volumes(items),
                            lesion_fraction=self.spec.training.lesion_sampling_fraction).batches(batch_size, rng)

    def loss(self) -> nn.Module:
        weight = self.spec.training.lesion_size_weight
        if weight > 0:
            return LesionSizeWeightedDiceCE(weight, reference_px=lesion_reference_px(self.spec.preprocessing))
        return DiceCELoss(to_onehot_y=True, softmax=True, batch=True)

    def validate(self, model: nn.Module, items: Sequence[Mapping[str, Any]], device: torch.device) -> dict[str, float]:
        from oncolabel.evaluation import evaluate_cases, grid_case_counts
        from oncolabel.inference import SegmentationPredictor

        predictor = SegmentationPredictor.from_model(model, self.spec, device=device)
        counts = []
        for item in items:
            img, prepared, _ = load_volume(item, self.spec.preprocessing)
            prob = self.spec.preprocessing.restore(predictor._forward(prepared), prepared)
            pred = predictor.postprocess(prob, img)
            truth = sitk.GetArrayFromImage(read_image(item["label"])) > 0
            counts.append(grid_case_counts(pred, truth, img, case_id=str(item["image"])))
        ev = evaluate_cases(counts, n_boot=1)
        sens, ppv = ev.slice_sensitivity.value or 0.0, ev.slice_ppv.value or 0.0
        f1 = 0.0 if sens + ppv == 0 else 2 * sens * ppv / (sens + ppv)
        dice = ev.dice_pooled or 0.0
        model.train()
        return {"score": round(0.5 * (dice + f1), 4), "dice": round(dice, 4), "slice_sensitivity": round(sens, 4),
                "slice_ppv": round(ppv, 4), "fp_per_scan": round(ev.false_positives_per_scan, 3)}

    def recalibrate(self, model: nn.Module, items: Sequence[Mapping[str, Any]], rng: np.random.Generator,
                    device: torch.device, *, n_batches: int = 32, batch_size: int = 16) -> None:
        """Precise batch norm: replace every BatchNorm's running mean/variance by its average over many batches.

        The running statistics are otherwise an exponential average dominated by the last few dozen training
        batches, and validation swung with them (slice PPV 0.66 -> 0.35 between two checks at a near-zero learning
        rate). Here they are the cumulative average over ``n_batches`` fresh batches from the training sampler (the
        distribution the weights were trained under: whole-slice statistics, tried too, lowered validation F1 from
        0.87 to 0.79); weights are unchanged (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021).
        """
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return
        batches = SliceSampler(self.spec.preprocessing, self.volumes(items)).batches(batch_size, rng)
        saved = [(m, m.momentum) for m in bns]
        was_training = model.training
        model.train()
        try:
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative moving average
            with torch.no_grad():
                for _ in range(n_batches):
                    x, _ = next(batches)
                    model(x.to(device).contiguous(memory_format=torch.channels_last))
        finally:
            for m, momentum in saved:
                m.momentum = momentum
            model.train(was_training)


def finetune_settings(spec: TaskSpec) -> dict[str, Any]:
    """Trainer keyword arguments for a short warm-started round (active learning)."""
    t = spec.training
    return {"iterations": t.finetune_iterations, "learning_rate": t.finetune_learning_rate}


def with_overrides(spec: TaskSpec, **training: Any) -> TaskSpec:
    """``spec`` with some training defaults replaced (:func:`oncolabel.tasks.base.spec_variant`)."""
    return spec_variant(spec, training=training)


# --- classification -------------------------------------------------------------------------------------------


class BranchCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy of ``(batch, classes)`` logits, or the mean cross-entropy of each branch of a multi-branch
    output ``(batch, branches, classes)`` (every branch is trained as its own classifier, e.g. one per CT phase).

    ``target`` holds class indices (integer dtype) or, for a binary task, soft labels: the probability of class 1
    per item (floating dtype), used as the target distribution ``(1 - q, q)``.
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch's name
        if target.is_floating_point():
            target = torch.stack([1.0 - target, target], dim=-1).to(input.dtype)
        if input.ndim == 3:
            b, k, c = input.shape
            return super().forward(input.reshape(b * k, c), target.repeat_interleave(k, dim=0))
        return super().forward(input, target)


@register_adapter("classification")
class ClassificationAdapter:
    """Image classification: class-balanced sampling, cross-entropy, validation by AUC (binary) or accuracy.

    The task's preprocessing object provides ``load(item) -> Tensor`` (the one deterministic preprocessing, shared
    with inference; ``item`` holds the inputs, e.g. file paths) and optionally ``augment(x, rng) -> Tensor``.
    Items carry the class index under ``"label"``. A network may return one logit vector per branch,
    ``(batch, branches, classes)``: each branch is then trained with its own cross-entropy, and validation scores
    the branches' mean logits.

    Binary tasks may also give an item a soft label under ``"soft_label"``: the probability of class 1 to train
    towards (e.g. derived from a continuous outcome that the class dichotomises, which carries more information per
    case than the class). When any training item has one, the cross-entropy uses soft targets (the hard label,
    0 or 1, for items without one); sampling stays class-balanced by the hard label, validation uses the hard labels.
    """

    #: contiguous (not channels-last) input: measured 2x faster for the classifiers' small-channel CPU convolutions
    channels_last = False

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self._cache: dict[str, torch.Tensor] = {}

    def _key(self, item: Mapping[str, Any]) -> str:
        return repr(sorted((k, str(v)) for k, v in item.items() if k not in TARGET_KEYS))

    def tensor(self, item: Mapping[str, Any]) -> torch.Tensor:
        key = self._key(item)
        if key not in self._cache:
            self._cache[key] = self.spec.preprocessing.load(item)
        return self._cache[key]

    @staticmethod
    def labels(items: Sequence[Mapping[str, Any]]) -> np.ndarray:
        try:
            y = np.asarray([int(it["label"]) for it in items])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"every training item needs an integer 'label' (class index): {exc}") from exc
        return y

    @staticmethod
    def soft_labels(items: Sequence[Mapping[str, Any]], y: np.ndarray) -> np.ndarray | None:
        """Probability of class 1 per item (its ``soft_label``, else its hard label), or None when no item has a
        soft label."""
        if not any("soft_label" in it for it in items):
            return None
        q = np.asarray([float(it.get("soft_label", y[i])) for i, it in enumerate(items)])
        if not np.all((q >= 0.0) & (q <= 1.0)):
            bad = q[~((q >= 0.0) & (q <= 1.0))]
            raise InvalidInputError(f"soft labels are probabilities of class 1 in [0, 1]; got {bad[:5].tolist()}")
        return q

    def batches(self, items: Sequence[Mapping[str, Any]], batch_size: int,
                rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        y = self.labels(items)
        classes = np.unique(y)
        if classes.size < 2:
            raise InvalidInputError(f"training needs at least two classes; all items have class {classes.tolist()}")
        q = self.soft_labels(items, y)
        if q is not None and classes.size != 2:
            raise InvalidInputError(f"soft labels need a binary task; the items have classes {classes.tolist()}")
        by_class = {c: np.nonzero(y == c)[0] for c in classes}
        augment = getattr(self.spec.preprocessing, "augment", None)
        while True:
            cls = rng.choice(classes, size=batch_size)
            idx = [int(rng.choice(by_class[c])) for c in cls]
            xs = [self.tensor(items[i]) for i in idx]
            if augment is not None:
                xs = [augment(x, rng) for x in xs]
            target = (torch.as_tensor(y[idx], dtype=torch.long) if q is None
                      else torch.as_tensor(q[idx], dtype=torch.float32))
            yield torch.stack(xs), target

    def loss(self) -> nn.Module:
        return BranchCrossEntropy()

    def predict_proba(self, model: nn.Module, items: Sequence[Mapping[str, Any]], device: torch.device,
                      batch_size: int = 16) -> np.ndarray:
        """Softmax probabilities ``(n, classes)`` in eval mode."""
        was_training = model.training
        model.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                x = torch.stack([self.tensor(it) for it in items[start:start + batch_size]]).to(device)
                out.append(torch.softmax(fused_logits(model(x), model), dim=1).float().cpu().numpy())
        model.train(was_training)
        return np.concatenate(out)

    def validate(self, model: nn.Module, items: Sequence[Mapping[str, Any]], device: torch.device) -> dict[str, float]:
        from oncolabel.stats import roc_auc

        y = self.labels(items)
        p = self.predict_proba(model, items, device)
        acc = float(np.mean(p.argmax(1) == y))
        eps = 1e-7
        nll = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0))))
        if p.shape[1] == 2 and np.unique(y).size == 2:
            auc = float(roc_auc(y, p[:, 1]))
            return {"score": round(auc, 4), "auc": round(auc, 4), "accuracy": round(acc, 4), "log_loss": round(nll, 4)}
        return {"score": round(acc, 4), "accuracy": round(acc, 4), "log_loss": round(nll, 4)}
