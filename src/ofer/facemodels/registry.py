"""Face-model specs (``default``, ``flame:PATH``, ``npz:PATH``) and records that reload a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FaceModelError
from .base import FaceModel

SPEC_HELP = "use 'default', 'flame:PATH' or 'npz:PATH'"
# Load options of each kind: name -> "path" | "int" | "str".
OPTIONS: dict[str, dict[str, str]] = {
    "default": {},
    "flame": {"masks": "path", "landmarks": "path", "front_indices": "path", "shape_dim": "int",
              "expression_dim": "int"},
    "npz": {"name": "str"},
}
OPTION_TYPES = {"int": "an integer >= 0", "str": "a string", "path": "a path"}
RECORD_DIMS = ("num_vertices", "shape_dim", "expression_dim", "pose_dim", "jaw_dim")


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a face-model spec into (kind, path); 'default' has an empty path."""
    spec = spec.strip()
    if spec == "default":
        return "default", ""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("flame", "npz") or not path:
        raise FaceModelError(f"unknown face model {spec!r}: {SPEC_HELP}")
    return kind, path


def _check_options(kind: str, options: dict[str, Any]) -> None:
    """Refuse unknown option names and values of the wrong type (one line)."""
    allowed = OPTIONS[kind]
    if kind == "default" and options:
        raise FaceModelError(f"the default face model takes no options, got {sorted(options)}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise FaceModelError(f"{kind}: unknown face-model option(s) {', '.join(unknown)} (use {', '.join(allowed)})")
    for name, value in options.items():
        wanted = allowed[name]
        if wanted == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:  # None: the loader's default
            ok = value is None or isinstance(value, str) or (wanted == "path" and isinstance(value, Path))
        if not ok:
            raise FaceModelError(f"{kind}: face-model option {name} must be {OPTION_TYPES[wanted]}, got {value!r}")


def load_face_model(spec: str = "default", **options) -> FaceModel:
    """Load a face model.

    Args:
        spec: ``default`` (built-in head), ``flame:PATH`` (official FLAME pickle; ``options`` may
            give ``masks``, ``landmarks``, ``front_indices`` files and ``shape_dim``/``expression_dim``),
            or ``npz:PATH`` (generic linear model; option ``name``).
    Returns:
        the model; its ``options`` (and ``info().to_dict()["options"]``) record what was given.
    Raises:
        FaceModelError: unknown spec or option, missing or malformed file (one-line message).
    """
    kind, path = parse_spec(spec)
    _check_options(kind, options)
    if kind == "default":
        from .anny_head import load_default

        return load_default()
    if kind == "npz":
        from .linear import load_npz

        return load_npz(Path(path), **options)
    from .flame import load_flame

    return load_flame(Path(path), **options)


def load_face_model_from_record(record: dict) -> FaceModel:
    """Reload the model a record (``FaceModelInfo.to_dict()``, as stored in checkpoints) describes.

    Loads ``record["spec"]`` with ``record["options"]``, then checks the recorded dimensions and,
    when the record has one, the fingerprint.

    Raises:
        FaceModelError: a malformed record, a model that cannot be loaded, or one that differs
            from the record (other dimensions or content).
    """
    if not isinstance(record, dict) or not isinstance(record.get("spec"), str):
        raise FaceModelError(f"not a face-model record (needs a 'spec' string): {record!r:.80}")
    spec, options = record["spec"], record.get("options") or {}
    if not isinstance(options, dict):
        raise FaceModelError(f"{spec}: face-model record options must be a mapping, got {type(options).__name__}")
    model = load_face_model(spec, **options)
    info = model.info().to_dict()
    wrong = [f"{k} {record[k]} vs {info[k]}" for k in RECORD_DIMS if k in record and record[k] != info[k]]
    if wrong:
        raise FaceModelError(f"{spec}: the model loaded here differs from the record ({', '.join(wrong)})")
    expected = record.get("fingerprint")
    if expected and expected != info["fingerprint"]:
        raise FaceModelError(f"{spec}: the model loaded here has fingerprint {info['fingerprint'][:12]}, the record "
                             f"{str(expected)[:12]} (same spec, other content)")
    return model


def available_face_models() -> list[str]:
    """Specs that load on this machine without user files."""
    return ["default"]
