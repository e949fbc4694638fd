"""Inference: checkpoint + task spec -> results on the input image's grid.

:class:`SegmentationPredictor` runs the task's one preprocessing (:mod:`oncolabel.preprocessing`), the network
in batches over all slices (``torch.inference_mode``, channels-last memory layout, bfloat16 autocast where the
hardware runs it natively: :mod:`oncolabel.precision`; with the spec's ``bone_roi_margin_mm`` only on the bone
region of each group of ``bone_roi_slices`` slices), maps probabilities back onto the input grid and
post-processes them (component analysis on the mask's bounding box). The loaded network has its batch norms folded
into the convolutions (:func:`oncolabel.networks.fuse.fold_batch_norm`). The CLI, the MONAI Label infer task, the
benchmark and evaluation use it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.checkpoint import Checkpoint, load_checkpoint
from oncolabel.errors import CheckpointError, InvalidInputError, ModelNotFoundError
from oncolabel.io import array_to_image
from oncolabel.candidates import (COMPONENT_FEATURES, RING_MM, ComponentFilter, candidate_mask,
                                  component_features, component_table, grow_along_z)
from oncolabel.lesions import Lesion, bounding_box, find_lesions, label_components
from oncolabel.networks.fuse import fold_batch_norm
from oncolabel.precision import autocast, resolve_precision
from oncolabel.preprocessing import PreparedVolume
from oncolabel.provenance import package_versions
from oncolabel.tasks import TaskSpec, get_task
from oncolabel.tasks.base import build_network
from oncolabel.transforms import AxisOrientation

__all__ = ["SegmentationPredictor", "SegmentationResult", "default_checkpoint_path", "resolve_device"]


def default_checkpoint_path(spec: TaskSpec) -> Path:
    """Path of the checkpoint shipped with the package for ``spec``.

    Raises:
        ModelNotFoundError: the task ships no model, or the file is missing from this installation.
    """
    if not spec.default_model:
        raise ModelNotFoundError(f"task {spec.name!r} ships no default model; pass --model CKPT")
    path = Path(str(resources.files("oncolabel.models").joinpath(spec.default_model)))
    if not path.is_file():
        raise ModelNotFoundError(f"the shipped model {spec.default_model} is missing from {path.parent}; "
                                 "reinstall OncoLabel or pass --model CKPT")
    return path


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; ``cuda`` without a GPU is an error, not a silent fallback."""
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise InvalidInputError(f"device {device!r}: use 'cpu' or 'cuda'")
    return dev


def build_model(ckpt: Checkpoint, spec: TaskSpec) -> nn.Module:
    """The network of ``ckpt``, checked against ``spec``'s preprocessing."""
    if not ckpt.preprocessing_matches(spec.preprocessing):
        raise CheckpointError(
            f"checkpoint {ckpt.path} was trained with preprocessing {dict(ckpt.preprocessing)}, but task "
            f"{spec.name!r} now uses {spec.preprocessing.to_dict()}; retrain or use a matching checkpoint")
    model = build_network(ckpt.network["name"], ckpt.network["kwargs"])
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {ckpt.path}: weights do not fit the network ({exc})") from exc
    return model.eval()


@dataclass
class SegmentationResult:
    """Output of :meth:`SegmentationPredictor.predict`."""

    label: sitk.Image
    probability: np.ndarray
    lesions: list[Lesion]
    provenance: dict[str, Any] = field(default_factory=dict)
    #: how the input lies outside the images the model was trained on (:meth:`SegmentationPredictor.input_warnings`)
    warnings: tuple[str, ...] = ()

    @property
    def volume_ml(self) -> float:
        return float(sum(les.volume_ml for les in self.lesions))

    def summary(self) -> str:
        return (f"{len(self.lesions)} lesion(s) found, total volume {self.volume_ml:.2f} ml "
                f"(model {self.provenance.get('model_version', '?')}; {RESEARCH_USE_ONLY})")

    def to_json(self) -> dict[str, Any]:
        return {"notice": RESEARCH_USE_ONLY, "lesion_count": len(self.lesions),
                "total_volume_ml": round(self.volume_ml, 4),
                "lesions": [les.to_dict() for les in self.lesions], "provenance": self.provenance,
                **({"warnings": list(self.warnings)} if self.warnings else {})}


class SegmentationPredictor:
    """Whole-volume slice-wise segmentation with a task's checkpoint.

    Args:
        checkpoint: a path or a loaded :class:`Checkpoint` (``None``: the task's shipped model).
        task: task name or spec.
        device: ``cpu`` or ``cuda``.
        batch_size: slices per forward pass (``None``: 8 on a CPU, where smaller batches stay in cache and ran
            20-30% faster than 32 on a 2-core AVX2 machine; 32 on a GPU). Memory and speed only: the bone region is
            taken per group of the spec's ``bone_roi_slices`` slices, so the probabilities do not depend on it beyond
            float rounding.
        precision: ``auto`` (bf16 where the hardware runs it natively, else fp32), ``fp32`` or ``bf16``
            (:mod:`oncolabel.precision`); recorded in the provenance.
    """

    def __init__(self, checkpoint: str | Path | Checkpoint | None = None, *, task: str | TaskSpec = "bone_metastasis",
                 device: str | torch.device | None = "cpu", batch_size: int | None = None,
                 precision: str = "auto") -> None:
        self.spec = get_task(task) if isinstance(task, str) else task
        if self.spec.kind != "segmentation":
            raise InvalidInputError(f"task {self.spec.name!r} is a {self.spec.kind} task, not segmentation")
        if checkpoint is None:
            checkpoint = default_checkpoint_path(self.spec)
        self.checkpoint = (checkpoint if isinstance(checkpoint, Checkpoint)
                           else load_checkpoint(checkpoint, task=self.spec.name))
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = _batch_size(batch_size, self.device)
        # batch norms folded into the convolutions (same function, about 15 % less time on a CPU)
        model, _ = fold_batch_norm(build_model(self.checkpoint, self.spec))
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self._lock = threading.Lock()  # MC-dropout toggles module state; serialise forward passes
        self.component_filter = (ComponentFilter.from_dict(self.checkpoint.component_filter)
                                 if self.checkpoint.component_filter else None)

    @classmethod
    def from_model(cls, model: nn.Module, spec: TaskSpec, *, device: str | torch.device | None = "cpu",
                   batch_size: int | None = None, precision: str = "fp32") -> "SegmentationPredictor":
        """A predictor around an in-memory model (validation during training); nothing is loaded or copied.

        ``fp32`` adds no autocast of its own: the trainer's (when it trains in bf16) stays in force.
        """
        self = cls.__new__(cls)
        self.spec, self.device = spec, resolve_device(device)
        self.batch_size = _batch_size(batch_size, self.device)
        self.precision = resolve_precision(precision, self.device)
        self.checkpoint = Checkpoint(task=spec.name, network=spec.network.to_dict(),
                                     preprocessing=spec.preprocessing.to_dict(), state_dict={})
        self.model, self._lock, self.component_filter = model, threading.Lock(), None
        return self

    @property
    def version(self) -> str:
        return self.checkpoint.version

    # --- core -----------------------------------------------------------------------------------------------
    def _forward(self, prepared: PreparedVolume, *, mc_dropout: bool = False, flip: bool = False) -> torch.Tensor:
        prep = self.spec.preprocessing
        n = prepared.image.shape[0]
        out = torch.empty((n, *prepared.size), dtype=torch.float32)
        with self._lock, torch.inference_mode(), autocast(self.precision, self.device):
            self.model.eval()
            if mc_dropout:
                self.model.enable_mc_dropout(True)
            try:
                group = int(getattr(self.spec.postprocessing, "bone_roi_slices", self.batch_size))
                for start in range(0, n, group):  # the bone region: one box per group of slices (see the spec)
                    zs = list(range(start, min(n, start + group)))
                    x = prep.slices(prepared, zs)
                    if flip:
                        x = torch.flip(x, dims=(-1,))
                    o = out[start:start + len(zs)]
                    roi = self._bone_roi(x)
                    if roi is None:  # no bone in these slices: no bone metastasis
                        o.zero_()
                        continue
                    ry, rx = roi
                    x = x[..., ry, rx]
                    if flip:
                        rx = slice(o.shape[-1] - rx.stop, o.shape[-1] - rx.start)
                    o.zero_()
                    for b in range(0, len(zs), self.batch_size):  # forward passes of batch_size slices
                        xb = x[b:b + self.batch_size].to(self.device).contiguous(memory_format=torch.channels_last)
                        p = torch.softmax(self.model(xb).float(), dim=1)[:, 1]
                        if flip:
                            p = torch.flip(p, dims=(-1,))
                        o[b:b + len(xb), ry, rx] = p.cpu()
            finally:
                if mc_dropout:
                    self.model.enable_mc_dropout(False)
        return out

    def _bone_roi(self, x: torch.Tensor) -> tuple[slice, slice] | None:
        """The in-plane box of a batch of network inputs ``(b, c, h, w)`` that the network is run on.

        With the spec's ``bone_roi_margin_mm`` (post-processing) set: the box of every pixel above
        ``bone_roi_hu`` in any slice or channel of the batch, grown by the margin (at least 32 working pixels a
        side), or ``None`` when the batch holds no bone; without it, the whole input.
        """
        post = self.spec.postprocessing
        margin_mm = getattr(post, "bone_roi_margin_mm", None)
        h, w = x.shape[-2:]
        if margin_mm is None:
            return slice(0, h), slice(0, w)
        prep = self.spec.preprocessing
        box = bounding_box((x > prep.window_value(post.bone_roi_hu)).flatten(0, 1).any(0).numpy())
        if box is None:
            return None
        pad = int(np.ceil(margin_mm / prep.spacing_mm))
        out = []
        for b, n in zip(box, (h, w)):
            lo, hi = max(0, b.start - pad), min(n, b.stop + pad)
            short = 32 - (hi - lo)
            if short > 0:  # too small a box for the network's strides: widen it evenly, inside the image
                lo = max(0, lo - (short + 1) // 2)
                hi = min(n, lo + 32)
                lo = max(0, hi - 32)
            out.append(slice(lo, hi))
        return out[0], out[1]

    def prepare(self, image: sitk.Image) -> PreparedVolume:
        return self.spec.preprocessing.prepare_image(image)

    def predict_probability(self, image: sitk.Image) -> np.ndarray:
        """Metastasis probability on ``image``'s grid, ``(z, y, x)`` float32."""
        prepared = self.prepare(image)
        prob = self._forward(prepared)
        if getattr(self.spec.postprocessing, "flip_average", False):  # test-time flip, averaged before restoring
            prob = prob.add_(self._forward(prepared, flip=True)).mul_(0.5)
        return self.spec.preprocessing.restore(prob, prepared)

    def candidates(self, prob: np.ndarray, image: sitk.Image) -> np.ndarray:
        """The thresholded components before the optional filter and growth (the spec's post-processing)."""
        post = self.spec.postprocessing
        voxel_mm3 = float(np.prod(image.GetSpacing()))
        return candidate_mask(prob, threshold=post.threshold, seed_threshold=post.seed_threshold,
                              min_voxels=int(np.ceil(post.min_lesion_mm3 / voxel_mm3)))

    @staticmethod
    def _work_box(mask: np.ndarray, spacing_zyx: tuple[float, ...], extra_z: int = 0) -> tuple[slice, ...] | None:
        """Bounding box of ``mask`` widened by what the component features look at (their ring) + ``extra_z``."""
        box = bounding_box(mask)
        if box is None:
            return None
        pad = [int(np.ceil(RING_MM / s)) + 2 + (extra_z if axis == 0 else 0) for axis, s in enumerate(spacing_zyx)]
        return tuple(slice(max(0, b.start - q), min(n, b.stop + q)) for b, q, n in zip(box, pad, mask.shape))

    @staticmethod
    def _canonical(image: sitk.Image, *arrays: np.ndarray) -> tuple[AxisOrientation, tuple[float, ...], list]:
        """The image's :class:`AxisOrientation`, its canonical ``(z, y, x)`` spacing, and views of ``arrays`` (on its
        grid) and of its HU on the canonical axes: the post-processing measures slices along the head-feet axis and
        the component features as the filter learnt them, whichever way the file stores its axes."""
        orientation = AxisOrientation.of_image(image)
        views = [orientation.to_canonical(np.asarray(a)) for a in (*arrays, sitk.GetArrayViewFromImage(image))]
        return orientation, orientation.spacing_zyx(image), views

    def postprocess(self, prob: np.ndarray, image: sitk.Image) -> np.ndarray:
        """Probability -> lesion mask: candidates, then the checkpoint's false-positive filter and the growth
        into adjacent slices when the spec enables them (both on the candidates' widened bounding box, on the
        canonical axes; the mask is returned on ``image``'s grid)."""
        post = self.spec.postprocessing
        orientation, spacing, (prob, hu) = self._canonical(image, prob)
        mask = self.candidates(prob, image)
        use_filter = self.component_filter is not None and getattr(post, "component_filter", False)
        steps = int(getattr(post, "grow_slices", 0))
        box = self._work_box(mask, spacing, steps) if (use_filter or steps > 0) else None
        if box is not None:
            sub, h = mask[box], hu[box]
            if use_filter:
                labels, _ = label_components(sub)
                keep = self.component_filter.keep(component_features(prob[box], h, labels, spacing))
                sub = np.concatenate([[False], keep])[labels]
            if steps > 0:
                sub = grow_along_z(sub, h, steps=steps, quantiles=tuple(post.grow_quantiles))
            mask = np.zeros_like(mask)
            mask[box] = sub
        return np.ascontiguousarray(orientation.from_canonical(mask))

    def component_table(self, image: sitk.Image, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (:data:`oncolabel.candidates.COMPONENT_FEATURES`) of this model's candidate components on a
        labelled case, and whether each touches the truth (1) or is a false positive (0): what
        :func:`oncolabel.candidates.fit_component_filter` learns from (:func:`oncolabel.candidates.component_table`
        on the candidates' widened bounding box, on the canonical axes)."""
        _, spacing, (prob, truth, hu) = self._canonical(image, self.predict_probability(image), truth)
        mask = self.candidates(prob, image)
        box = self._work_box(mask, spacing)
        if box is None:
            return np.zeros((0, len(COMPONENT_FEATURES))), np.zeros(0, dtype=np.int64)
        labels, _ = label_components(mask[box])
        return component_table(prob[box], hu[box], labels, truth[box], spacing)

    def input_warnings(self, image: sitk.Image) -> list[str]:
        """Sentences naming how ``image``'s voxel size lies outside the range of the images the model was trained on
        (its checkpoint's record, else the task's assumption for checkpoints without one): the network then sees
        anatomy at a scale and blur it never learnt, and its output is an extrapolation. 2% tolerance (rounding)."""
        trained = self.checkpoint.input_spacing(self.spec.assumed_input_spacing_mm)
        if trained is None:
            return []
        sz, sy, sx = AxisOrientation.of_image(image).spacing_zyx(image)
        out = []
        for what, values, (lo, hi) in (("in-plane pixel size", (sy, sx), trained["inplane"]),
                                       ("slice spacing", (sz,), trained["slice"])):
            if min(values) < lo * 0.98 or max(values) > hi * 1.02:
                shown = " x ".join(f"{v:.2f}" for v in dict.fromkeys(round(v, 2) for v in values))
                out.append(f"{what} {shown} mm lies outside the {lo:.2f}-{hi:.2f} mm of the images this model was "
                           "trained on: its output is an extrapolation")
        return out

    def predict(self, image: sitk.Image) -> SegmentationResult:
        """Segment ``image``; the label is on ``image``'s exact grid (0 background, 1 metastasis)."""
        prob = self.predict_probability(image)
        mask = self.postprocess(prob, image)
        label = array_to_image(mask.astype(np.uint8), image, pixel_type=sitk.sitkUInt8)
        return SegmentationResult(label=label, probability=prob, lesions=find_lesions(mask, image),
                                  provenance=self.provenance(), warnings=tuple(self.input_warnings(image)))

    def uncertainty(self, image: sitk.Image, *, samples: int = 4, seed: int = 0) -> dict[str, float]:
        """Per-image uncertainty for active learning.

        ``samples`` Monte-Carlo-dropout passes plus a left-right flipped pass (test-time augmentation); the
        score is the mean over voxels that any pass calls lesion-likely (p > 0.1) of the binary entropy of the mean
        probability, weighted by the fraction of slices involved, plus the mean disagreement (variance) between
        passes. 0 when every pass agrees on an empty result. The dropout masks are drawn from ``seed`` (torch's
        global random state is left as it was), so an image's score, and the order in which active learning
        proposes images, does not change from one scoring run to the next.
        """
        prepared = self.prepare(image)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            passes = [self._forward(prepared, mc_dropout=True) for _ in range(max(1, samples))]
        passes.append(self._forward(prepared, flip=True))
        stack = torch.stack(passes)
        mean = stack.mean(0)
        active = (stack > 0.1).any(0)
        if not bool(active.any()):
            return {"uncertainty": 0.0, "entropy": 0.0, "variance": 0.0, "active_fraction": 0.0}
        p = mean[active].clamp(1e-6, 1 - 1e-6)
        entropy = float((-(p * p.log2() + (1 - p) * (1 - p).log2())).mean())
        variance = float(stack.var(0)[active].mean())
        frac = float(active.flatten(1).any(1).float().mean())
        return {"uncertainty": entropy * frac + variance, "entropy": entropy, "variance": variance,
                "active_fraction": frac}

    def provenance(self) -> dict[str, Any]:
        out = predictor_provenance(self.spec, self.checkpoint, self.device)
        out["precision"] = self.precision
        if self.component_filter is not None:
            cf = self.checkpoint.component_filter or {}
            out["component_filter"] = {
                "applied": bool(getattr(self.spec.postprocessing, "component_filter", False)),
                **{k: cf.get(k) for k in ("kind", "threshold", "n_train", "fitted_on_model", "fitted_on", "cv_auc")}}
        return out


def _batch_size(batch_size: int | None, device: torch.device) -> int:
    if batch_size is None:
        return 32 if device.type == "cuda" else 8
    if int(batch_size) < 1:
        raise InvalidInputError(f"batch size {batch_size!r}: use a positive number of slices")
    return int(batch_size)


def predictor_provenance(spec: TaskSpec, ck: Checkpoint, device: torch.device) -> dict[str, Any]:
    """What every predictor's output records: notice, task, model version / hash / metrics, settings, software."""
    return {"notice": RESEARCH_USE_ONLY, "task": spec.name, "model_version": ck.version,
            "model_sha256": ck.sha256, "model_path": str(ck.path) if ck.path else None,
            "model_created_utc": ck.created_utc, "model_metrics": ck.metrics,
            "settings": spec.settings(), "device": str(device), "software": package_versions()}
