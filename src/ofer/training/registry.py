"""Trainers by name: ``ofer train NAME`` finds NAME here and builds its options from the trainer's
option class (see :mod:`.options`), so a new trainer is one registered function.

::

    @register(IdGenOptions)
    def train_idgen(options: IdGenOptions) -> list[dict]: ...

    get("idgen").run(data="data", run="runs/x", epochs=3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import ConfigError
from .options import TrainOptions


@dataclass(frozen=True)
class Trainer:
    """A registered trainer: its name (= the network folder), help line, options class and function."""

    name: str
    help: str
    options: type[TrainOptions]
    train: Callable[[TrainOptions], list[dict]]

    def run(self, **options) -> list[dict]:
        """Validate ``options`` (keyword arguments of the options class) and train; returns the log."""
        return self.train(self.options(**options))


_TRAINERS: dict[str, Trainer] = {}


def register(options: type[TrainOptions]):
    """Decorator registering ``fn(options) -> log`` under ``options.network``."""

    def wrap(fn: Callable[[TrainOptions], list[dict]]):
        name = options.network
        if not name or name in _TRAINERS:
            raise ValueError(f"trainer name {name!r} is empty or already registered")
        _TRAINERS[name] = Trainer(name, options.help or (fn.__doc__ or "").strip().split("\n")[0], options, fn)
        return fn

    return wrap


def get(name: str) -> Trainer:
    if name not in _TRAINERS:
        raise ConfigError(f"unknown trainer {name!r}; available: {', '.join(available())}")
    return _TRAINERS[name]


def available() -> list[str]:
    """Registered trainer names, in registration order."""
    return list(_TRAINERS)


__all__ = ["Trainer", "available", "get", "register"]
