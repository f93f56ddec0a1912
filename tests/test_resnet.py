"""ResNet backbones (torchvision's layouts, no torchvision) and FOCUS's zero-initialised encoder."""

import pytest
import torch

from ofer.methods.focus.encoder import FocusEncoder
from ofer.networks.resnet import backbone


@pytest.mark.parametrize("name, count, dim", [("resnet18", 11_176_512, 512), ("resnet50", 23_508_032, 2048)])
def test_parameter_counts_match_torchvision_without_the_classifier(name, count, dim):
    net = backbone(name)
    assert sum(p.numel() for p in net.parameters()) == count and net.out_dim == dim


def test_features_and_unknown_name():
    net = backbone("tiny").eval()
    assert net(torch.rand(2, 3, 64, 48)).shape == (2, net.out_dim)
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        backbone("vgg")


def test_fresh_focus_encoder_gives_theta_zero_and_learns():
    encoder = FocusEncoder(code_dim=11, backbone_name="tiny")
    images = torch.rand(3, 3, 64, 64)
    theta = encoder(images)
    assert theta.shape == (3, 11) and not theta.any()
    theta.pow(2).sum().add(theta.sum()).backward()
    assert encoder.head.weight.grad.abs().sum() > 0  # the zero layer still gets gradients
