"""A frozen ONNX feed-forward graph run by torch, so that gradients reach its input.

onnxruntime gives no gradients; FOCUS and the Occlusion Resistant Network need them through ArcFace
(their perceptual losses). :class:`OnnxGraph` executes the nodes of a small convolutional ONNX graph in
order with torch operators, its initializers held as buffers (no parameters: nothing trains), and can
return any named intermediate tensor. Only the operators such networks use are supported
(:data:`OPERATORS`); any other is refused when the graph is read, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class OnnxGraphError(ValueError):
    """An ONNX graph that :class:`OnnxGraph` cannot run (unsupported operator or attribute)."""


def _conv(x, w, b=None, *, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, **_):
    top, left, bottom, right = pads
    if (top, left) != (bottom, right):
        x = F.pad(x, (left, right, top, bottom))
        top = left = 0
    return F.conv2d(x, w, b, stride=tuple(strides), padding=(top, left), dilation=tuple(dilations), groups=group)


def _prelu(x, slope):
    return torch.where(x >= 0, x, x * slope)  # slope broadcasts as ONNX says (e.g. (C, 1, 1))


def _gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    a = a.transpose(-1, -2) if transA else a
    b = b.transpose(-1, -2) if transB else b
    out = alpha * (a @ b)
    return out if c is None else out + beta * c


def _batch_norm(x, scale, bias, mean, var, *, epsilon=1e-5, **_):
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=epsilon)


OPERATORS: dict[str, Callable] = {
    "Conv": _conv,
    "PRelu": _prelu,
    "Relu": lambda x: torch.relu(x),
    "Add": lambda a, b: a + b,
    "Mul": lambda a, b: a * b,
    "Flatten": lambda x, *, axis=1: x.flatten(axis),
    "Gemm": _gemm,
    "BatchNormalization": _batch_norm,
}


class OnnxGraph(nn.Module):
    """The nodes of an ONNX graph with one input, as a frozen torch module.

    ``forward(x, keep=())`` returns the graph's first output, or with ``keep`` a dict of the named
    tensors (intermediate or output) it lists. ``shapes(x)``: every tensor's shape for an input ``x``.
    """

    def __init__(self, nodes: list[tuple[str, list[str], str, dict]], constants: dict[str, np.ndarray],
                 input_name: str, output_name: str):
        super().__init__()
        self.nodes = nodes  # (op, inputs, output, attributes)
        self.input_name, self.output_name = input_name, output_name
        self._buffer_of = {}
        for k, (name, value) in enumerate(constants.items()):
            self._buffer_of[name] = f"c{k}"
            self.register_buffer(f"c{k}", torch.from_numpy(np.array(value, dtype=np.float32)))
        self.eval()

    @classmethod
    def from_onnx(cls, path: str | Path) -> "OnnxGraph":
        """Read ``path`` with ``onnx``; :class:`OnnxGraphError` names an operator it cannot run."""
        import onnx
        from onnx import helper, numpy_helper

        model = onnx.load(str(path))
        graph = model.graph
        constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        inputs = [i.name for i in graph.input if i.name not in constants]
        if len(inputs) != 1 or not graph.output:
            raise OnnxGraphError(f"{path}: expected one input and an output, found inputs {inputs}")
        nodes = []
        for node in graph.node:
            if node.op_type not in OPERATORS or len(node.output) != 1:
                raise OnnxGraphError(f"{path}: operator {node.op_type} ({node.name}) is not supported")
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            nodes.append((node.op_type, list(node.input), node.output[0], attributes))
        return cls(nodes, constants, inputs[0], graph.output[0].name)

    def forward(self, x: torch.Tensor, keep: Sequence[str] = ()):
        values = {self.input_name: x}
        for op, inputs, output, attributes in self.nodes:
            args = [values[i] if i in values else getattr(self, self._buffer_of[i]) for i in inputs if i]
            values[output] = OPERATORS[op](*args, **attributes)
        if not keep:
            return values[self.output_name]
        missing = [name for name in keep if name not in values]
        if missing:
            raise KeyError(f"no tensor named {', '.join(missing)} in the graph")
        return {name: values[name] for name in keep}

    def names(self) -> list[str]:
        """The tensors the graph computes, in order (the last is its output)."""
        return [output for _, _, output, _ in self.nodes]

    @torch.no_grad()
    def shapes(self, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
        return {name: tuple(v.shape) for name, v in self.forward(x, keep=self.names()).items()}
