"""Where ofer keeps its caches and where optional development assets are found."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """The user's ofer cache (converted face models, ...): ``$OFER_CACHE_DIR`` or the platform cache dir."""
    env = os.environ.get("OFER_CACHE_DIR")
    path = Path(env) if env else Path(platformdirs.user_cache_dir("ofer"))
    return path.expanduser()


def shared_dir() -> Path | None:
    """The development assets folder (``$OFER_SHARED`` or ``../shared`` beside the repository), if present."""
    env = os.environ.get("OFER_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared")
    candidates.append(Path.cwd().parent / "shared")
    for path in candidates:
        if (path / "assets").is_dir():
            return path
    return None


FLAME_FILE_NAMES = ("flame2023_Open.pkl", "flame2023.pkl", "generic_model.pkl")


def user_flame_file() -> Path:
    """The user's FLAME pickle: ``$OFER_FLAME`` or one of ``FLAME_FILE_NAMES`` in ``<cache>/flame``.

    Raises:
        FaceModelError: when no FLAME file was found (FLAME must be downloaded by the user).
    """
    from .errors import FaceModelError

    env = os.environ.get("OFER_FLAME")
    candidates = [Path(env).expanduser()] if env else []
    candidates += [cache_dir() / "flame" / name for name in FLAME_FILE_NAMES]
    for path in candidates:
        if path.is_file():
            return path
    raise FaceModelError(f"no FLAME file: set OFER_FLAME or put one of {', '.join(FLAME_FILE_NAMES)} in {cache_dir() / 'flame'}")
