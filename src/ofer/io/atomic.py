"""Atomic writes: a file appears complete or not at all, and an existing file is never half-replaced.

:func:`atomic_path` is the one primitive; the other functions are conveniences built on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data, indent: int = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent))


def save_npz(path: str | Path, compressed: bool = False, **arrays) -> Path:
    """``np.savez`` (or ``savez_compressed``) to ``path`` atomically."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            (np.savez_compressed if compressed else np.savez)(handle, **arrays)
    return Path(path)


def save_picture(path: str | Path, picture) -> Path:
    """A PIL image or an (H, W[, C]) uint8 array to ``path`` atomically, in the format its suffix names."""
    from PIL import Image

    if not isinstance(picture, Image.Image):
        picture = Image.fromarray(picture)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        picture.save(tmp, format=fmt)
    return Path(path)


def save_figure(path: str | Path, figure, **savefig_kw) -> Path:
    """A matplotlib figure to ``path`` atomically (``savefig_kw`` go to ``savefig``; format from the suffix)."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, **savefig_kw)
    return Path(path)


def torch_save(payload, path: str | Path) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def replace_dir(staging: str | Path, target: str | Path) -> Path:
    """Move the finished folder ``staging`` to ``target``, replacing an earlier ``target``.

    The earlier folder is first renamed to a hidden backup and only deleted once ``staging`` is in
    place; if the final rename fails the backup is moved back, so ``target`` is never lost.
    """
    staging, target = Path(staging), Path(target)
    if not target.exists():
        os.replace(staging, target)
        return target
    backup = target.with_name(f".{target.name}.old")
    shutil.rmtree(backup, ignore_errors=True)
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    return target
