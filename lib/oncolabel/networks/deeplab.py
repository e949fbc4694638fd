"""DeepLabV3+ built from MONAI blocks.

Chen L.-C., Zhu Y., Papandreou G., Schroff F., Adam H. "Encoder-Decoder with Atrous Separable Convolution
for Semantic Image Segmentation" (ECCV 2018). Encoder: a compact residual network (MONAI ``ResidualUnit``)
whose last stage keeps the resolution with dilated convolutions (output stride 8 or 16); atrous spatial
pyramid pooling (ASPP: 1x1 branch, three dilated 3x3 branches, image-level pooling); decoder: the ASPP output
upsampled to stride 4, concatenated with projected stride-4 encoder features, refined by two 3x3 convolutions.

The network is deliberately small (about 0.5 M parameters with the defaults) so that it trains from scratch
on a CPU and segments a 512 x 512 x 200 CT in seconds. Dropout before the classifier doubles as the
Monte-Carlo dropout used for active-learning uncertainty (:meth:`DeepLabV3Plus.enable_mc_dropout`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

__all__ = ["DeepLabV3Plus"]


class _ASPP(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, dilations: Sequence[int],
                 norm: str | tuple, act: str | tuple) -> None:
        super().__init__()
        conv = lambda k, d: Convolution(spatial_dims, in_channels, out_channels, kernel_size=k,  # noqa: E731
                                        dilation=d, norm=norm, act=act, bias=False)
        self.branches = nn.ModuleList([conv(1, 1)] + [conv(3, d) for d in dilations])
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1),
            Convolution(spatial_dims, in_channels, out_channels, kernel_size=1, norm=None, act=act, bias=True),
        )
        self.project = Convolution(spatial_dims, out_channels * (len(dilations) + 2), out_channels,
                                   kernel_size=1, norm=norm, act=act, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [b(x) for b in self.branches]
        pooled = self.pool(x).expand_as(feats[0])
        return self.project(torch.cat(feats + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ for 2D (or 2.5D: adjacent slices as channels) segmentation.

    Args:
        spatial_dims: 2 (3D is accepted by the blocks but not tuned).
        in_channels: input channels (1 for 2D, 2k+1 for 2.5D with k neighbours each side).
        out_channels: classes including background.
        channels: encoder widths at strides 2, 4, 8 and the last (dilated) stage.
        output_stride: 8 or 16 (the last stage is dilated, so the ASPP sees stride 8 or 16 features).
        aspp_channels: ASPP width.
        aspp_dilations: dilations of the three ASPP 3x3 branches (at output stride 16 the paper uses 6, 12, 18;
            they are halved to 3, 6, 9 for compact CT fields of view at stride 8 by default).
        low_level_channels: width of the projected stride-4 skip features.
        decoder_channels: decoder width.
        dropout: dropout before the classifier (also used for MC dropout).
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2,
                 channels: Sequence[int] = (16, 32, 64, 96), output_stride: int = 8,
                 aspp_channels: int = 64, aspp_dilations: Sequence[int] = (3, 6, 9),
                 low_level_channels: int = 24, decoder_channels: int = 32, dropout: float = 0.1,
                 norm: str | tuple = "BATCH", act: str | tuple = "RELU") -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"spatial_dims={spatial_dims}: DeepLabV3Plus is implemented for 2D (and 2.5D) input")
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride={output_stride}: must be 8 or 16")
        if len(channels) != 4:
            raise ValueError(f"channels={tuple(channels)}: four encoder widths are required")
        c1, c2, c3, c4 = channels
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        unit = lambda i, o, s=1: ResidualUnit(spatial_dims, i, o, strides=s, kernel_size=3,  # noqa: E731
                                              subunits=2, norm=norm, act=act)
        self.stem = nn.Sequential(
            Convolution(spatial_dims, in_channels, c1, strides=2, kernel_size=3, norm=norm, act=act, bias=False),
            Convolution(spatial_dims, c1, c1, kernel_size=3, norm=norm, act=act, bias=False),
        )  # stride 2
        self.stage1 = unit(c1, c2, 2)  # stride 4 (low-level features)
        self.stage2 = unit(c2, c3, 2)  # stride 8
        if output_stride == 16:
            self.stage3 = unit(c3, c4, 2)
        else:  # keep stride 8, widen the receptive field with dilation
            self.stage3 = nn.Sequential(
                Convolution(spatial_dims, c3, c4, kernel_size=3, dilation=2, norm=norm, act=act, bias=False),
                Convolution(spatial_dims, c4, c4, kernel_size=3, dilation=2, norm=norm, act=act, bias=False),
            )
        self.aspp = _ASPP(spatial_dims, c4, aspp_channels, aspp_dilations, norm, act)
        self.low_proj = Convolution(spatial_dims, c2, low_level_channels, kernel_size=1, norm=norm, act=act,
                                    bias=False)
        self.decoder = nn.Sequential(
            Convolution(spatial_dims, aspp_channels + low_level_channels, decoder_channels, kernel_size=3,
                        norm=norm, act=act, bias=False),
            Convolution(spatial_dims, decoder_channels, decoder_channels, kernel_size=3, norm=norm, act=act,
                        bias=False),
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(decoder_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        low = self.stage1(self.stem(x))
        high = self.aspp(self.stage3(self.stage2(low)))
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([high, self.low_proj(low)], dim=1))
        y = self.classifier(self.dropout(y))
        # the few-channel logits upsample 2-2.5x faster in the default layout than channels-last (same values)
        return F.interpolate(y.contiguous(), size=size, mode="bilinear", align_corners=False)

    def enable_mc_dropout(self, enabled: bool = True) -> "DeepLabV3Plus":
        """Keep dropout active in eval mode (Monte-Carlo dropout, Gal & Ghahramani 2016)."""
        if isinstance(self.dropout, nn.Dropout2d):
            self.dropout.train(enabled)
        return self
