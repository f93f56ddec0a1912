"""Restricted unpickling: read the data in a pickle without running the code a pickle can carry.

A pickle names the callables that rebuild its objects (``module.name``) and the unpickler imports
and calls them, so ``pickle.load`` on an untrusted file can run anything (``os.system``,
``builtins.eval``, ...). :class:`RestrictedUnpickler` resolves only the names in :data:`ALLOWED`:
what numpy arrays, numpy scalars and dtypes, scipy sparse csc/csr matrices, sets and legacy torch
tensors need (under their old and new module paths). Anything else is refused with
:class:`UnsafePickleError` before it is imported. A caller may add names through ``extra``
(the FLAME reader maps every ``chumpy.*`` class to an inert stand-in).

- :func:`load_pickle`: a pickle file (or open binary file);
- :func:`load_numpy`: what ``np.load(..., allow_pickle=True)`` reads (``.npy`` with object arrays,
  ``.npz``, or a plain pickle), through the restricted unpickler.
"""

from __future__ import annotations

import _compat_pickle
import collections
import contextlib
import io
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional

import numpy as np
import numpy.lib.format as npy_format

from ..errors import OferError

try:  # numpy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core.multiarray import scalar as _scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar as _scalar

ExtraResolver = Callable[[str, str], Optional[Any]]
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


class UnsafePickleError(pickle.UnpicklingError, OferError):
    """A pickle references a callable outside the allowlist (it was not imported or run)."""


def _numpy_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refused to rebuild an array of type {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for ``bytes``, limited to latin-1."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _reconstructor(cls, base, state):
    """``copyreg._reconstructor`` (protocol 0/1 objects) for plain classes only: no ``base.__init__`` call."""
    if base is not object or state is not None:
        raise pickle.UnpicklingError(f"refused copyreg._reconstructor with base {base!r}")
    return cls.__new__(cls)


def _torch_storage_from_bytes(data: bytes):
    """Legacy ``torch.storage._load_from_bytes``, read by torch's own restricted (weights-only) loader."""
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _torch_rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *metadata):
    """``torch._utils._rebuild_tensor_v2`` without the backward hooks (callables) a pickle may carry."""
    import torch
    from torch._utils import _rebuild_tensor_v2

    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise pickle.UnpicklingError(f"refused to rebuild a tensor from {type(storage).__name__}")
    return _rebuild_tensor_v2(storage, storage_offset, size, stride, bool(requires_grad), collections.OrderedDict())


def _sparse(name: str) -> Callable[[], Any]:
    def resolve():
        import scipy.sparse

        return getattr(scipy.sparse, name)

    return resolve


def _const(value: Any) -> Callable[[], Any]:
    return lambda: value


def _paths(modules: tuple[str, ...], name: str, resolve: Callable[[], Any]) -> dict:
    return {(module, name): resolve for module in modules}


NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
# (module, name) as written in the pickle -> resolver of the object to use. Python 2 names
# ("__builtin__", "copy_reg") are listed too: a subclass's find_class sees them unmapped.
ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): _const(np.ndarray),
    ("numpy", "dtype"): _const(np.dtype),
    **_paths(NUMPY_CORE, "_reconstruct", _const(_numpy_reconstruct)),
    **_paths(NUMPY_CORE, "scalar", _const(_scalar)),
    **_paths(("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse"), "csc_matrix", _sparse("csc_matrix")),
    **_paths(("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse"), "csr_matrix", _sparse("csr_matrix")),
    **_paths(("builtins", "__builtin__"), "set", _const(set)),
    **_paths(("builtins", "__builtin__"), "frozenset", _const(frozenset)),
    ("collections", "OrderedDict"): _const(collections.OrderedDict),
    ("_codecs", "encode"): _const(_latin1_bytes),
    # protocol 0/1 objects (a sparse matrix, a chumpy node) come as _reconstructor(cls, object, None)
    **_paths(("copyreg", "copy_reg"), "_reconstructor", _const(_reconstructor)),
    **_paths(("builtins", "__builtin__"), "object", _const(object)),
    ("torch.storage", "_load_from_bytes"): _const(_torch_storage_from_bytes),
    ("torch._utils", "_rebuild_tensor_v2"): _const(_torch_rebuild_tensor),
}


def _python3_name(module: str, name: str) -> str:
    """``module.name`` as Python 3 spells it (``__builtin__.eval`` -> ``builtins.eval``), for messages."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED` names (and what ``extra`` returns non-None for)."""

    def __init__(self, file: BinaryIO, extra: Optional[ExtraResolver] = None, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self._extra = extra

    def find_class(self, module: str, name: str) -> Any:
        resolve = ALLOWED.get((module, name))
        if resolve is not None:
            return resolve()
        found = self._extra(module, name) if self._extra is not None else None
        if found is not None:
            return found
        raise UnsafePickleError(f"refused to load {_python3_name(module, name)} from a pickle (not a known data "
                                "class; pickles can run code)")


def load_pickle(source: str | Path | BinaryIO, extra: Optional[ExtraResolver] = None,
                encoding: str = "latin1") -> Any:
    """Unpickle a file (path or open binary file) with :class:`RestrictedUnpickler`.

    ``encoding='latin1'`` reads Python 2 pickles (their ``str`` are bytes) as the FLAME files need.

    Raises:
        UnsafePickleError: a name outside the allowlist (nothing is imported or run).
        OSError, pickle.UnpicklingError, ...: an unreadable file, as ``pickle.load``.
    """
    with _quiet_unraisable():
        if isinstance(source, (str, Path)):
            with open(source, "rb") as handle:
                return RestrictedUnpickler(handle, extra, encoding).load()
        return RestrictedUnpickler(source, extra, encoding).load()


@contextlib.contextmanager
def _quiet_unraisable():
    """A garbage pickle that fails mid-way (a MemoryError in a huge bytearray) leaves CPython
    printing "SystemError: deallocated bytearray object has exported buffers" from its
    unraisable hook; the caller reports the failure itself in one line."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        sys.unraisablehook = hook


def _read_npy(handle: BinaryIO, extra: Optional[ExtraResolver], encoding: str) -> np.ndarray:
    """One ``.npy`` stream: numeric arrays by numpy (no pickle), object arrays by the restricted unpickler."""
    start = handle.tell()
    version = npy_format.read_magic(handle)
    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    if version not in readers:  # numpy writes object arrays as 1.0/2.0; anything else without pickle
        handle.seek(start)
        return npy_format.read_array(handle, allow_pickle=False)
    shape, _, dtype = readers[version](handle)
    if not dtype.hasobject:
        handle.seek(start)
        return npy_format.read_array(handle, allow_pickle=False)
    array = RestrictedUnpickler(handle, extra, encoding).load()
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise pickle.UnpicklingError(f"object array payload does not match its header {tuple(shape)}")
    return array


def load_numpy(path: str | Path, extra: Optional[ExtraResolver] = None, encoding: str = "latin1") -> Any:
    """``np.load(path, allow_pickle=True)`` without running pickled code.

    Returns:
        an ``np.ndarray`` for ``.npy`` (object arrays unpickled restrictedly), a ``dict`` name ->
        array for ``.npz``, or the unpickled object for a plain pickle.
    Raises:
        UnsafePickleError, OSError, ValueError, pickle.UnpicklingError: as :func:`load_pickle` / ``np.load``.
    """
    with open(path, "rb") as handle:
        magic = handle.read(len(NPY_MAGIC))
        handle.seek(0)
        if magic.startswith(ZIP_MAGIC):
            with zipfile.ZipFile(handle) as archive:
                return {name[: -len(".npy")] if name.endswith(".npy") else name:
                        _read_npy(io.BytesIO(archive.read(name)), extra, encoding) for name in archive.namelist()}
        if magic == NPY_MAGIC:
            return _read_npy(handle, extra, encoding)
        return RestrictedUnpickler(handle, extra, encoding).load()


__all__ = ["ALLOWED", "RestrictedUnpickler", "UnsafePickleError", "load_numpy", "load_pickle"]
