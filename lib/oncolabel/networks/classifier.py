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

    :meth:`features` returns the pooled penultimate activations (``channels[-1]`` values per input): the
    "deep features" that radiomics-style pipelines feed to classical classifiers.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2,
                 channels: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.2,
                 norm: str | tuple = "BATCH", act: str | tuple = "RELU") -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims={spatial_dims}: must be 2 or 3")
        if not channels:
            raise ValueError("channels must list at least one stage width")
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
        self.head = nn.Linear(prev, out_channels)

    @property
    def n_features(self) -> int:
        return self.head.in_features

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature maps (for Grad-CAM)."""
        return self.encoder(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate activations, shape ``(batch, n_features)``."""
        return self.pool(self.encoder(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))

    def enable_mc_dropout(self, enabled: bool = True) -> "CNNClassifier":
        if isinstance(self.dropout, nn.Dropout):
            self.dropout.train(enabled)
        return self
