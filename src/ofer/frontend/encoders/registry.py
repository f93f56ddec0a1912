"""The one registry of encoders: classes by name, one shared instance per name (created under a lock)."""

from __future__ import annotations

import threading

from .base import ROLES, Encoder, EncoderError

DEFAULT_ENCODERS = {"identity": "arcface-w600k_mbf", "appearance": "mediapipe-blendshapes-landmarks"}

_LOCK = threading.RLock()  # re-entrant: an encoder's constructor may itself ask for an encoder
_CLASSES: dict[str, type[Encoder]] = {}
_ALIASES: dict[str, str] = {}  # short name -> name
_INSTANCES: dict[str, Encoder] = {}


def register_encoder(cls: type[Encoder]) -> type[Encoder]:
    """Class decorator: make ``cls`` available by its ``name`` and ``aliases``."""
    if cls.role not in ROLES:
        raise ValueError(f"{cls.__name__}: role must be one of {ROLES}, not {cls.role!r}")
    if not isinstance(cls.dim, int) or cls.dim <= 0:
        raise ValueError(f"{cls.__name__}: dim must be a positive int, not {cls.dim!r}")
    with _LOCK:
        for key in (cls.name, *cls.aliases):
            owner = _CLASSES.get(_ALIASES.get(key, key))
            if owner is not None and owner is not cls:
                raise ValueError(f"encoder name {key!r} is already taken by {owner.__name__}")
        _CLASSES[cls.name] = cls
        for alias in cls.aliases:
            _ALIASES[alias] = cls.name
    return cls


def encoder_class(name: str) -> type[Encoder]:
    """The registered class called ``name`` (or one of its aliases); EncoderError when unknown."""
    with _LOCK:
        cls = _CLASSES.get(_ALIASES.get(name, name))
        if cls is None:
            raise EncoderError(f"unknown encoder {name!r} (available: {', '.join(_CLASSES)})")
        return cls


def get_encoder(name: str) -> Encoder:
    """The shared instance of the encoder called ``name`` (or an alias), created on first call."""
    with _LOCK:
        cls = encoder_class(name)
        if cls.name not in _INSTANCES:
            _INSTANCES[cls.name] = cls()
        return _INSTANCES[cls.name]


def available_encoders(role: str | None = None, aliases: bool = False) -> tuple[str, ...]:
    """Names of the registered encoders of ``role`` (all roles for ``None``), with their aliases if asked."""
    if role is not None and role not in ROLES:
        raise EncoderError(f"unknown encoder role {role!r} (choose from {', '.join(ROLES)})")
    with _LOCK:
        names: list[str] = []
        for name, cls in _CLASSES.items():
            if role is None or cls.role == role:
                names.append(name)
                if aliases:
                    names.extend(cls.aliases)
        return tuple(names)


def default_encoder(role: str) -> Encoder:
    """The shared default encoder of a role (:data:`DEFAULT_ENCODERS`)."""
    if role not in DEFAULT_ENCODERS:
        raise EncoderError(f"unknown encoder role {role!r} (choose from {', '.join(ROLES)})")
    return get_encoder(DEFAULT_ENCODERS[role])
