"""FOCUS's reconstruction encoder R: a ResNet and a zero-initialised linear layer to theta (A.2.1).

With the output layer at zero a fresh encoder gives theta = 0 for every picture, which the decoder
reads as the mean face, frontal, at the nominal distance, under ambient light.
"""

from __future__ import annotations

import torch
from torch import nn

from ...networks.resnet import backbone


class FocusEncoder(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> theta (B, code_dim)."""

    def __init__(self, code_dim: int, backbone_name: str = "resnet18"):
        super().__init__()
        self.backbone = backbone(backbone_name)
        self.head = nn.Linear(self.backbone.out_dim, code_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images * 2.0 - 1.0))
