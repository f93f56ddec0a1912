"""ResNet backbones (He et al. 2016) in plain torch: the encoders of FOCUS and the Occlusion Resistant
Network (torchvision has no CPU build here). Randomly initialised; ``forward`` returns the pooled
features (B, ``out_dim``), no classifier. ``resnet18`` / ``resnet50`` match torchvision's layouts
(11.18 M / 23.51 M parameters without the classifier); ``tiny_resnet`` is for smoke runs.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """Stem (7x7 stride 2, max-pool), four stages of ``layers`` blocks (widths ``base`` x 1, 2, 4, 8,
    stride 2 from the second), global average pooling: (B, 3, H, W) -> (B, out_dim)."""

    def __init__(self, block: type, layers: tuple[int, int, int, int], base: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, base, 7, 2, 3, bias=False), nn.BatchNorm2d(base),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], base
        for k, count in enumerate(layers):
            width = base * 2 ** k
            blocks = []
            for j in range(count):
                blocks.append(block(cin, width, stride=2 if (j == 0 and k > 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean((2, 3))


def resnet18() -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet50() -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3))


def tiny_resnet() -> ResNet:
    return ResNet(BasicBlock, (1, 1, 1, 1), base=8)


BACKBONES = {"resnet18": resnet18, "resnet50": resnet50, "tiny": tiny_resnet}


def backbone(name: str) -> ResNet:
    """A backbone by name (:data:`BACKBONES`); ValueError naming the choices otherwise."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]()
