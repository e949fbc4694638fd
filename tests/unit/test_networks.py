from __future__ import annotations

import math

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


def test_classifier_mask_pooling_averages_over_the_region():
    """Mask pooling: with a full mask it is global average pooling (+ log size 0); the size feature is the log of the
    mask's mean; the features do not depend on the mask's scale outside [0, 1]; bad settings are refused."""
    from oncolabel.networks import CNNClassifier

    torch.manual_seed(0)
    net = CNNClassifier(spatial_dims=3, in_channels=2, channels=(8, 16), pooling="mask").eval()
    ref = CNNClassifier(spatial_dims=3, in_channels=2, channels=(8, 16)).eval()
    ref.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("head")}, strict=False)
    x = torch.rand(2, 2, 16, 16, 16)
    x[:, 1] = 1.0
    with torch.no_grad():
        f = net.features(x)
        assert net.n_features == 17 and f.shape == (2, 17) and net(x).shape == (2, 2)
        torch.testing.assert_close(f[:, :16], ref.features(x))
        assert torch.allclose(f[:, 16], torch.zeros(2), atol=1e-5)
        x[:, 1] = 0.0
        x[:, 1, 4:12, 4:12, 4:12] = 1.0  # 1/8 of the cube
        assert torch.allclose(net.features(x)[:, 16], torch.full((2,), math.log(1 / 8)), atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        CNNClassifier(pooling="max")
    with pytest.raises(ValueError, match="mask_channel"):
        CNNClassifier(in_channels=2, pooling="mask", mask_channel=2)


def test_fold_batch_norm_keeps_the_function():
    """Folded network = original in eval mode (non-trivial running statistics), every norm folded, original kept."""
    import torch

    from oncolabel.networks import DeepLabV3Plus
    from oncolabel.networks.fuse import fold_batch_norm

    torch.manual_seed(0)
    net = DeepLabV3Plus(in_channels=3, out_channels=2, channels=(8, 8, 16, 16), aspp_channels=8,
                        low_level_channels=8, decoder_channels=8)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    folded, n = fold_batch_norm(net)
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert n == norms > 0 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 40, 36)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-4)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == norms  # the original is untouched
