"""Inception-v3 (torchvision architecture) with an optional width multiplier and independent branches.

Szegedy C, Vanhoucke V, Ioffe S, Shlens J, Wojna Z. "Rethinking the Inception Architecture for Computer Vision"
(CVPR 2016). The network is torchvision's ``inception_v3(weights=None, aux_logits=False, init_weights=True)``,
trained from scratch (no weights are ever downloaded).

Three additions, all off by default:

* ``width``: every convolution's channel count is multiplied by ``width`` (a multiple of 1/8, so that the
  concatenated branch widths of each Inception block still add up). ``width=1`` is the published network
  (21.8 M parameters, about 87 MB); ``width=0.125`` keeps the topology (every block, kernel and stride) at 1/64 of
  the parameters, which is what lets it train on a CPU (measured in ``docs/classifiers.md``).
* ``branches``: ``branches`` independent Inception trunks, each seeing its own ``in_channels // branches``
  channels (e.g. one trunk per CT phase, as in the renal-mass study where one Inception-v3 was trained per
  phase). The output is then ``(batch, branches, out_channels)``: one logit vector per branch, each trained with its
  own loss by :class:`oncolabel.training.ClassificationAdapter`. Because the trunks share no parameter, this is
  exactly one independent model per branch, trained on the same batches.

* ``fusion="features"`` (with ``branches > 1``): a further linear classifier on the concatenated pooled features of
  all trunks (late fusion at the feature level, so that it can combine what the branches measure: the washout of a
  renal mass is corticomedullary minus nephrographic attenuation, which no single phase shows). The output is then
  ``(batch, branches + 1, out_channels)``, the fused logits last (:attr:`InceptionV3.fused_output`); every trunk
  keeps its own classifier and loss, so each branch remains a classifier of its own input (per-phase AUCs, and the
  branches' logits still serve when an input is missing).

The input must be at least 75 x 75 pixels (the stride of the stem and the two reduction blocks).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.models import inception as tv_inception

__all__ = ["InceptionV3", "MIN_INPUT_SIZE"]

#: smallest input height / width Inception-v3 accepts
MIN_INPUT_SIZE = 75


class _ScaledConv(tv_inception.BasicConv2d):
    """torchvision's ``BasicConv2d`` (conv -> batch norm -> ReLU) with both channel counts scaled by ``width``."""

    def __init__(self, in_channels: int, out_channels: int, *, width: float = 1.0, **kwargs: Any) -> None:
        super().__init__(_scaled(in_channels, width), _scaled(out_channels, width), **kwargs)


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _trunk(in_channels: int, out_channels: int, width: float, dropout: float) -> nn.Module:
    """One torchvision Inception-v3, input ``in_channels``, channels scaled by ``width``, no auxiliary head."""
    conv = partial(_ScaledConv, width=width) if width != 1.0 else tv_inception.BasicConv2d
    blocks = [conv] + [partial(b, conv_block=conv) for b in (tv_inception.InceptionA, tv_inception.InceptionB,
                                                              tv_inception.InceptionC, tv_inception.InceptionD,
                                                              tv_inception.InceptionE, tv_inception.InceptionAux)]
    net = tv_inception.inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=out_channels,
                                    dropout=dropout, inception_blocks=blocks)
    if in_channels != 3 or width != 1.0:  # the stem's input is the image, the head's input the pooled trunk
        net.Conv2d_1a_3x3 = tv_inception.BasicConv2d(in_channels, _scaled(32, width), kernel_size=3, stride=2)
        net.fc = nn.Linear(_scaled(2048, width), out_channels)
        for m in (net.Conv2d_1a_3x3.conv, net.fc):  # torchvision's initialisation of the replaced layers
            torch.nn.init.trunc_normal_(m.weight, mean=0.0, std=0.1, a=-2, b=2)
        nn.init.zeros_(net.fc.bias)
    return net


class InceptionV3(nn.Module):
    """Inception-v3 classifier (MONAI-style signature).

    Args:
        spatial_dims: must be 2.
        in_channels: input channels in all (split evenly between branches).
        out_channels: classes.
        width: channel multiplier, a multiple of 1/8 in (0, 1].
        branches: independent trunks (e.g. one per CT phase); output ``(batch, branches, out_channels)`` when > 1.
        dropout: dropout before each trunk's linear layer (torchvision's default 0.5).
        cam_layer: the block whose output Grad-CAM explains (``Mixed_6e``, the last 17 x 17 block at 299 px, by
            default; ``Mixed_5d`` gives finer maps on small inputs).
        init: ``torchvision`` (its N(0, 0.1) truncated-normal weights) or ``kaiming`` (He fan-in initialisation of
            every convolution, which the narrow trunks needed to train from scratch; see ``docs/classifiers.md``).
        fusion: ``none`` or ``features`` (a linear classifier on all branches' pooled features, output last).

    Attributes:
        trunks: the torchvision ``Inception3`` modules, one per branch.
        fusion_head: the fused classifier (dropout, linear), or None.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, out_channels: int = 2, width: float = 1.0,
                 branches: int = 1, dropout: float = 0.5, cam_layer: str = "Mixed_6e", init: str = "torchvision",
                 fusion: str = "none") -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"spatial_dims={spatial_dims}: Inception-v3 is a 2D network")
        if not 0 < width <= 1 or abs(width * 8 - round(width * 8)) > 1e-9:
            raise ValueError(f"width={width}: must be a multiple of 1/8 in (0, 1] (e.g. 1, 0.5, 0.25, 0.125)")
        if branches < 1 or in_channels % branches:
            raise ValueError(f"in_channels={in_channels} cannot be split evenly into {branches} branch(es)")
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.width, self.branches = float(width), int(branches)
        self.trunks = nn.ModuleList([_trunk(in_channels // branches, out_channels, self.width, dropout)
                                     for _ in range(branches)])
        if init == "kaiming":  # He et al. 2015 fan-in initialisation of every convolution (instead of N(0, 0.1))
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif init != "torchvision":
            raise ValueError(f"init={init!r}: use 'torchvision' or 'kaiming'")
        if not hasattr(self.trunks[0], cam_layer):
            raise ValueError(f"cam_layer={cam_layer!r} is not a block of Inception-v3 (e.g. 'Mixed_6e', 'Mixed_5d')")
        self.cam_layer = cam_layer
        if fusion not in ("none", "features"):
            raise ValueError(f"fusion={fusion!r}: use 'none' or 'features'")
        if fusion == "features" and branches < 2:
            raise ValueError(f"fusion='features' needs branches >= 2, got {branches}")
        self.fusion = fusion
        self.fusion_head: nn.Module | None = None
        if fusion == "features":
            self.fusion_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.n_features, out_channels))
            nn.init.zeros_(self.fusion_head[1].bias)

    @property
    def fused_output(self) -> bool:
        """Whether the last output row is the fused classifier's (``fusion="features"``)."""
        return self.fusion_head is not None

    @property
    def n_features(self) -> int:
        """Length of :meth:`features` (pooled penultimate activations of all branches)."""
        return sum(t.fc.in_features for t in self.trunks)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (batch, {self.in_channels}, h, w), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(f"Inception-v3 needs at least {MIN_INPUT_SIZE} x {MIN_INPUT_SIZE} pixels, "
                             f"got {tuple(x.shape[-2:])}")

    def _chunks(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self._check(x)
        return torch.chunk(x, self.branches, dim=1) if self.branches > 1 else (x,)

    def split_branch(self, x: torch.Tensor, branch: int) -> tuple[nn.Module, torch.Tensor]:
        """The trunk of ``branch`` and its share of the input channels (to explain one branch alone)."""
        return self.trunks[branch], self._chunks(x)[branch]

    def cam_target(self, branch: int = 0) -> nn.Module:
        """The module Grad-CAM hooks for ``branch``."""
        return getattr(self.trunks[branch], self.cam_layer)

    @staticmethod
    def _pooled(trunk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A trunk's pooled penultimate activations (its forward pass without the final linear layer)."""
        fc = trunk.fc
        trunk.fc = nn.Identity()
        try:
            return trunk(x)
        finally:
            trunk.fc = fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate activations ``(batch, n_features)`` (branches concatenated)."""
        return torch.cat([self._pooled(trunk, xb) for trunk, xb in zip(self.trunks, self._chunks(x))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion_head is None:
            logits = [trunk(xb) for trunk, xb in zip(self.trunks, self._chunks(x))]
            return logits[0] if self.branches == 1 else torch.stack(logits, dim=1)
        feats = [self._pooled(trunk, xb) for trunk, xb in zip(self.trunks, self._chunks(x))]
        logits = [trunk.fc(f) for trunk, f in zip(self.trunks, feats)] + [self.fusion_head(torch.cat(feats, dim=1))]
        return torch.stack(logits, dim=1)

    def enable_mc_dropout(self, enabled: bool = True) -> "InceptionV3":
        """Keep the trunks' dropout active in eval mode (Monte-Carlo dropout)."""
        for trunk in self.trunks:
            trunk.dropout.train(enabled)
        if self.fusion_head is not None:
            self.fusion_head[0].train(enabled)
        return self
