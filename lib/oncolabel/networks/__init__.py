"""Networks. All share the MONAI signature ``(spatial_dims, in_channels, out_channels, ...)``.

:data:`NETWORKS` is the registry task specs name networks by (no ``eval`` of class names); a module adding a
network registers it here.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from oncolabel.networks.classifier import CNNClassifier
from oncolabel.networks.deeplab import DeepLabV3Plus
from oncolabel.networks.inception import InceptionV3

NETWORKS: dict[str, Callable[..., nn.Module]] = {"DeepLabV3Plus": DeepLabV3Plus, "CNNClassifier": CNNClassifier,
                                                 "InceptionV3": InceptionV3}

__all__ = ["CNNClassifier", "DeepLabV3Plus", "InceptionV3", "NETWORKS"]
