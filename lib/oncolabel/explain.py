"""Explanations of CNN classifiers: Grad-CAM heat maps.

Selvaraju RR, Cogswell M, Das A, Vedantam R, Parikh D, Batra D. "Grad-CAM: Visual Explanations from Deep Networks
via Gradient-based Localization" (ICCV 2017)::

    alpha_k = mean over positions of d score / d A_k          (A: the target layer's feature maps)
    L       = ReLU( sum_k alpha_k A_k )

The score is the logit *margin* of the target class (its logit minus the mean of the other logits): for a binary
classifier this is the quantity the calibrated probability is a monotone function of, so the map shows what pushed the
decision towards the class, not what raised both logits. The map is upsampled (bilinear / trilinear) to the network
input's size and scaled to [0, 1]; each task's preprocessing maps it back onto the input image's grid.

The target layer is ``model.cam_target(branch)`` when the network defines it (:class:`oncolabel.networks.inception
.InceptionV3`), else ``model.encoder`` (the last convolutional stage of :class:`oncolabel.networks.CNNClassifier`).
A network with independent branches may offer ``split_branch(x, k)`` (its branch module and input share) so that
only the explained branch runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oncolabel.errors import InvalidInputError

__all__ = ["grad_cam", "cam_target"]


def cam_target(model: nn.Module, branch: int | None = None) -> nn.Module:
    """The layer Grad-CAM explains (see the module docstring)."""
    if hasattr(model, "cam_target"):
        return model.cam_target(branch or 0)
    if hasattr(model, "encoder"):
        return model.encoder
    raise InvalidInputError(f"{type(model).__name__} has no cam_target() or encoder to explain")


def grad_cam(model: nn.Module, x: torch.Tensor, *, target_class: int = 1, branch: int | None = None,
             layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM map of one input.

    Args:
        model: the classifier (put in eval mode; its parameters are not changed).
        x: one input ``(1, channels, *spatial)``.
        target_class: class whose logit margin is explained.
        branch: for multi-branch networks (output ``(batch, branches, classes)``), the branch explained.
        layer: target layer (default :func:`cam_target`).

    Returns:
        float32 ``spatial``-shaped map in [0, 1] on the input's grid (all zeros when nothing supports the class).
    """
    if x.ndim < 4 or x.shape[0] != 1:
        raise InvalidInputError(f"grad_cam explains one input (1, channels, *spatial); got {tuple(x.shape)}")
    layer = layer if layer is not None else cam_target(model, branch)
    if branch is not None and hasattr(model, "split_branch"):  # independent branches: run only the one explained
        model, x = model.split_branch(x, branch)
        branch = None
    store: dict[str, Any] = {}

    def keep(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        store["a"] = output
        output.register_hook(lambda g: store.__setitem__("g", g))

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x.detach().float())
            if logits.ndim == 3:
                logits = logits[:, branch or 0]
            others = torch.cat([logits[:, :target_class], logits[:, target_class + 1:]], dim=1)
            score = logits[:, target_class] - (others.mean(dim=1) if others.shape[1] else 0.0)
            model.zero_grad(set_to_none=True)
            score.sum().backward()
    finally:
        handle.remove()
        model.train(was_training)
    a, g = store["a"].detach(), store["g"].detach()
    dims = tuple(range(2, a.ndim))
    weights = g.mean(dim=dims, keepdim=True)
    cam = F.relu((weights * a).sum(dim=1, keepdim=True))
    mode = "bilinear" if cam.ndim == 4 else "trilinear"
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode=mode, align_corners=False)[0, 0]
    peak = float(cam.max())
    model.zero_grad(set_to_none=True)
    return (cam / peak if peak > 0 else cam).numpy().astype(np.float32)
