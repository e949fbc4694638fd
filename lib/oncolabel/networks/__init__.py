"""Networks. All share the MONAI signature ``(spatial_dims, in_channels, out_channels, ...)``."""

from __future__ import annotations

from oncolabel.networks.deeplab import DeepLabV3Plus

__all__ = ["DeepLabV3Plus"]
