"""FOCUS's segmentation network S: a 5-level U-Net (BASELINES.md A.2.2).

Input (B, in_channels, H, W), H and W multiples of 16; output (B, 1, H, W) in (0, 1), sigmoid(5 z).
Encoder levels of widths n1 (1, 2, 4, 8, 16), each (conv3x3 + BN + ReLU) x 2, max-pooling between them,
Dropout(0.5) after the two deepest; decoder levels: nearest x2 upsampling, conv3x3 + BN + ReLU halving
the channels, the skip concatenated, (conv3x3 + BN + ReLU) x 2; a 1x1 head. n1 = 64: 34.5 M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

LEVELS = 5
SIGMOID_GAIN = 5.0  # the authors' sigmoid(5 z): a steeper mask


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _block(cin: int, cout: int, dropout: bool = False) -> nn.Sequential:
    layers = _conv_bn_relu(cin, cout) + _conv_bn_relu(cout, cout)
    return nn.Sequential(*layers, *([nn.Dropout(0.5)] if dropout else []))


class UNet(nn.Module):
    """``forward(x)`` -> (B, 1, H, W) mask in (0, 1); ``logits(x)`` -> the pre-sigmoid 5 z."""

    def __init__(self, in_channels: int = 6, n1: int = 64):
        super().__init__()
        widths = [n1 * 2 ** k for k in range(LEVELS)]
        self.down = nn.ModuleList(_block(cin, cout, dropout=k >= LEVELS - 2)
                                  for k, (cin, cout) in enumerate(zip([in_channels] + widths[:-1], widths)))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                              *_conv_bn_relu(widths[k + 1], widths[k]))
                                for k in reversed(range(LEVELS - 1)))
        self.merge = nn.ModuleList(_block(2 * widths[k], widths[k]) for k in reversed(range(LEVELS - 1)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        step = 2 ** (LEVELS - 1)
        if x.shape[-1] % step or x.shape[-2] % step:
            raise ValueError(f"UNet: height and width must be multiples of {step}, got {tuple(x.shape[-2:])}")
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else self.pool(x))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([skip, up(x)], dim=1))
        return SIGMOID_GAIN * self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))
