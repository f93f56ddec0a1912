"""Face-model specs: ``default``, ``flame:PATH``, ``npz:PATH``."""

from __future__ import annotations

from pathlib import Path

from ..errors import FaceModelError
from .base import FaceModel

SPEC_HELP = "use 'default', 'flame:PATH' or 'npz:PATH'"


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a face-model spec into (kind, path); 'default' has an empty path."""
    spec = spec.strip()
    if spec == "default":
        return "default", ""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("flame", "npz") or not path:
        raise FaceModelError(f"unknown face model {spec!r}: {SPEC_HELP}")
    return kind, path


def load_face_model(spec: str = "default", **options) -> FaceModel:
    """Load a face model.

    Args:
        spec: ``default`` (built-in head), ``flame:PATH`` (official FLAME pickle; ``options`` may
            give ``masks``, ``landmarks``, ``front_indices`` files and ``shape_dim``/``expression_dim``),
            or ``npz:PATH`` (generic linear model).
    Raises:
        FaceModelError: unknown spec, missing or malformed file (one-line message).
    """
    kind, path = parse_spec(spec)
    if kind == "default":
        if options:
            raise FaceModelError(f"the default face model takes no options, got {sorted(options)}")
        from .anny_head import load_default

        return load_default()
    if kind == "npz":
        from .linear import load_npz

        return load_npz(Path(path), **options)
    from .flame import load_flame

    return load_flame(Path(path), **options)


def available_face_models() -> list[str]:
    """Specs that load on this machine without user files."""
    return ["default"]
