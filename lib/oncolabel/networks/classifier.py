"""A compact CNN classifier (2D or 3D) whose penultimate layer doubles as a deep-feature extractor."""

from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

__all__ = ["CNNClassifier"]


class CNNClassifier(nn.Module):
    """Residual CNN -> global average pooling -> dropout -> linear.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (e.g. 2 for frontal + lateral MIPs stacked, 1 for a CT patch).
        out_channels: classes.
        channels: widths of the stages; each stage halves the resolution.
        dropout: dropout before the linear layer (also used for MC-dropout uncertainty).
        pooling: ``"average"`` (global average pooling) or ``"mask"``: the feature maps are averaged over a region
            of interest given as input channel ``mask_channel`` (a [0, 1] mask, e.g. a tumour contour, area-averaged
            to the feature maps' grid), and the log of the mask's mean over the input is appended as one more
            feature (the region's size). Averages over the region make per-region quantities (mean attenuation,
            fraction of necrosis, texture) linear in the features, which over a fixed field of view they are not
            (there they are multiplied by the region's size).
        mask_channel: the input channel holding the mask for ``pooling="mask"``.

    :meth:`features` returns the pooled penultimate activations (``channels[-1]`` values per input, + 1 with mask
    pooling): the "deep features" that radiomics-style pipelines feed to classical classifiers.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2,
                 channels: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.2,
                 norm: str | tuple = "BATCH", act: str | tuple = "RELU", pooling: str = "average",
                 mask_channel: int = -1) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims={spatial_dims}: must be 2 or 3")
        if not channels:
            raise ValueError("channels must list at least one stage width")
        if pooling not in ("average", "mask"):
            raise ValueError(f"pooling={pooling!r}: use 'average' or 'mask'")
        if not -in_channels <= mask_channel < in_channels:
            raise ValueError(f"mask_channel={mask_channel} is not one of the {in_channels} input channels")
        self.pooling, self.mask_channel = pooling, mask_channel
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        layers: list[nn.Module] = [Convolution(spatial_dims, in_channels, channels[0], kernel_size=3, norm=norm,
                                               act=act, bias=False)]
        prev = channels[0]
        for width in channels:
            layers.append(ResidualUnit(spatial_dims, prev, width, strides=2, kernel_size=3, subunits=2, norm=norm,
                                       act=act))
            prev = width
        self.encoder = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(prev + (pooling == "mask"), out_channels)

    @property
    def n_features(self) -> int:
        return self.head.in_features

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature maps (for Grad-CAM)."""
        return self.encoder(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate activations, shape ``(batch, n_features)``."""
        maps = self.encoder(x)
        if self.pooling == "average":
            return self.pool(maps).flatten(1)
        mask = x[:, self.mask_channel:self.mask_channel + 1 or None].clamp(0.0, 1.0)
        pool = nn.functional.adaptive_avg_pool2d if self.spatial_dims == 2 else nn.functional.adaptive_avg_pool3d
        w = pool(mask, maps.shape[2:])  # area average onto the feature grid (exact when the sizes divide)
        eps = 1e-6
        pooled = (maps * w).flatten(2).sum(2) / (w.flatten(2).sum(2) + eps)
        size = torch.log(mask.flatten(1).mean(1, keepdim=True) + eps)
        return torch.cat([pooled, size], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))

    def enable_mc_dropout(self, enabled: bool = True) -> "CNNClassifier":
        if isinstance(self.dropout, nn.Dropout):
            self.dropout.train(enabled)
        return self
