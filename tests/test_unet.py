"""FOCUS's segmentation U-Net (BASELINES.md A.12, "Architecture")."""

import pytest
import torch

from ofer.networks.unet import UNet


def test_paper_size_is_34_5_million_parameters():
    count = sum(p.numel() for p in UNet(6, 64).parameters())
    assert abs(count - 34.5e6) < 0.1e6


def test_mask_has_the_input_size_and_lies_in_0_1():
    torch.manual_seed(0)
    net = UNet(6, 4).eval()
    x = torch.rand(2, 6, 32, 48)
    with torch.no_grad():
        mask, logits = net(x), net.logits(x)
    assert mask.shape == (2, 1, 32, 48) and ((mask > 0) & (mask < 1)).all()
    torch.testing.assert_close(mask, torch.sigmoid(logits))
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.rand(1, 6, 30, 32))


def test_dropout_in_the_two_deepest_levels_and_batch_norm_everywhere():
    net = UNet(6, 4)
    has_dropout = [any(isinstance(m, torch.nn.Dropout) for m in block.modules()) for block in net.down]
    assert has_dropout == [False, False, False, True, True]
    assert all(any(isinstance(m, torch.nn.BatchNorm2d) for m in block.modules()) for block in net.down)
    assert net.down[0][0].in_channels == 6 and [b[0].out_channels for b in net.down] == [4, 8, 16, 32, 64]
