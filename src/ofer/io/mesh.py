"""Mesh files (PLY, OBJ) through trimesh. In memory meshes are in metres; files may be m or mm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from ..errors import InputError
from .atomic import atomic_path

UNITS = {"m": 1.0, "mm": 1000.0}
FORMATS = (".ply", ".obj")


def _as_numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)


def save_mesh(path: str | Path, vertices, faces, units: str = "m", vertex_colors=None) -> Path:
    """Write a triangle mesh to ``.ply`` or ``.obj``.

    Args:
        vertices: (V, 3) in metres (numpy or torch).
        faces: (F, 3) vertex indices.
        units: unit written to the file: ``m`` or ``mm``.
        vertex_colors: optional (V, 3) or (V, 4) uint8 / float in [0, 1].
    The file is written to a temporary name and renamed, so an interrupted write never leaves a
    truncated mesh behind.
    """
    path = Path(path)
    if units not in UNITS:
        raise InputError(f"unknown mesh units {units!r}: use 'm' or 'mm'")
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"{path}: unsupported mesh format (use .ply or .obj)")
    mesh = trimesh.Trimesh(
        vertices=_as_numpy(vertices).astype(np.float64) * UNITS[units],
        faces=_as_numpy(faces).astype(np.int64),
        vertex_colors=None if vertex_colors is None else _as_numpy(vertex_colors),
        process=False,
    )
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type=path.suffix.lower()[1:])
    return path


def load_mesh(path: str | Path, units: str = "m") -> tuple[np.ndarray, np.ndarray]:
    """Read a ``.ply``/``.obj`` triangle mesh written in ``units``; returns vertices (V,3) in metres and faces (F,3)."""
    path = Path(path)
    if units not in UNITS:
        raise InputError(f"unknown mesh units {units!r}: use 'm' or 'mm'")
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for bad files
        raise InputError(f"{path}: not a readable mesh ({type(exc).__name__}: {exc})") from None
    if len(mesh.vertices) == 0:
        raise InputError(f"{path}: mesh has no vertices")
    if not np.isfinite(np.asarray(mesh.vertices)).all():
        raise InputError(f"{path}: mesh vertices contain NaN or infinite values")
    return np.asarray(mesh.vertices) / UNITS[units], np.asarray(mesh.faces)
