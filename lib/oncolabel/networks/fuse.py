"""Inference-time batch-norm folding.

In eval mode a batch norm right after a convolution is an affine map per channel, so it can be folded into the
convolution's weights and bias: ``w' = w g / sqrt(v + eps)``, ``b' = (b - m) g / sqrt(v + eps) + beta``. The folded
network computes the same function (to float rounding) with one pass over the feature maps fewer per block.
Only for inference: the folded network no longer has batch-norm statistics to train.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["fold_batch_norm"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _fold(conv: nn.Module, bn: nn.Module) -> None:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())


def fold_batch_norm(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` (in eval mode) with every batch norm that directly follows a convolution folded into it.

    Recognises MONAI's ``Convolution`` block layout (a ``conv`` child followed by an ``adn`` whose first step is the
    norm ``N``) and plain ``nn.Sequential`` pairs ``(conv, batch norm)``. Returns the copy and the number of folded
    norms. Batch norms with ``affine=False`` or without running statistics are left as they are.
    """
    model = copy.deepcopy(model).eval()
    folded = 0

    def foldable(conv: nn.Module, bn: nn.Module) -> bool:
        return (isinstance(conv, _CONVS) and isinstance(bn, _NORMS) and bn.affine and bn.track_running_stats
                and bn.running_var is not None and conv.out_channels == bn.num_features)

    for module in model.modules():
        conv, adn = getattr(module, "conv", None), getattr(module, "adn", None)
        if isinstance(adn, nn.Sequential) and len(adn) and next(iter(adn.named_children()))[0] == "N":
            if foldable(conv, adn.N):
                _fold(conv, adn.N)
                adn.N = nn.Identity()
                folded += 1
        elif isinstance(module, nn.Sequential):
            names = [n for n, _ in module.named_children()]
            for a, b in zip(names, names[1:]):
                if foldable(getattr(module, a), getattr(module, b)):
                    _fold(getattr(module, a), getattr(module, b))
                    setattr(module, b, nn.Identity())
                    folded += 1
    return model, folded
