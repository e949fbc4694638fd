from __future__ import annotations

import pytest
import torch

from oncolabel.networks import DeepLabV3Plus


@pytest.mark.parametrize("in_channels, out_channels, stride, size", [(1, 2, 8, (64, 80)), (3, 2, 16, (96, 96)),
                                                                     (3, 4, 8, (50, 70))])
def test_output_shape(in_channels, out_channels, stride, size):
    net = DeepLabV3Plus(in_channels=in_channels, out_channels=out_channels, output_stride=stride).eval()
    with torch.no_grad():
        y = net(torch.rand(2, in_channels, *size))
    assert y.shape == (2, out_channels, *size)


def test_mc_dropout_gives_different_passes_only_when_enabled():
    torch.manual_seed(0)
    net = DeepLabV3Plus(in_channels=1, dropout=0.5).eval()
    x = torch.rand(1, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        net.enable_mc_dropout(True)
        assert not torch.equal(net(x), net(x))
        net.enable_mc_dropout(False)
        assert torch.equal(net(x), net(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="output_stride"):
        DeepLabV3Plus(output_stride=4)
    with pytest.raises(ValueError, match="2D"):
        DeepLabV3Plus(spatial_dims=3)


@pytest.mark.parametrize("dims, size", [(2, (2, 64, 64)), (3, (1, 32, 32, 32))])
def test_classifier_shapes_and_features(dims, size):
    from oncolabel.networks import CNNClassifier

    net = CNNClassifier(spatial_dims=dims, in_channels=size[0], out_channels=3, channels=(8, 16, 32)).eval()
    x = torch.rand(2, *size)
    with torch.no_grad():
        assert net(x).shape == (2, 3) and net.features(x).shape == (2, net.n_features) == (2, 32)
