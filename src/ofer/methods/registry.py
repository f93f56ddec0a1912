"""Methods by name: ``register`` (a class decorator), ``get``, ``available``."""

from __future__ import annotations

import threading

from ..errors import OferError

_METHODS: dict[str, type] = {}
_LOCK = threading.Lock()


def register(cls: type) -> type:
    """Class decorator: make ``cls`` (a :class:`~ofer.methods.base.Method`) available as ``cls.name``."""
    with _LOCK:
        if cls.name in _METHODS and _METHODS[cls.name] is not cls:
            raise ValueError(f"method {cls.name!r} is already registered")
        _METHODS[cls.name] = cls
    return cls


def get(name: str) -> type:
    """The method class registered as ``name`` (one-line error naming the choices otherwise)."""
    with _LOCK:
        if name not in _METHODS:
            raise OferError(f"unknown method {name!r}; choose from {', '.join(sorted(_METHODS))}")
        return _METHODS[name]


def available() -> list[str]:
    with _LOCK:
        return sorted(_METHODS)
