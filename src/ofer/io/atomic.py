"""Atomic writes: a file appears complete or not at all, and an existing file is never half-replaced.

:func:`atomic_path` is the one primitive; the other functions are conveniences built on it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator


STALE_SECONDS = 60.0  # a temporary unchanged for this long belongs to a killed process


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def follow_umask(path: str | Path, folder: bool = False) -> None:
    """Give ``path`` the mode a plain ``open`` / ``mkdir`` would (``tempfile`` makes 0600 / 0700)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def remove_stale(folder: Path, pattern: str) -> None:
    """Remove what a killed run left in ``folder`` under ``pattern`` (files or folders not modified
    for :data:`STALE_SECONDS`; a concurrent writer's fresh temporaries are left alone)."""
    now = time.time()
    for leftover in folder.glob(pattern):
        try:
            if now - leftover.stat().st_mtime < STALE_SECONDS:
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        except OSError:
            pass


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was; temporaries of
    ``path`` that a killed process left behind are removed first. The file gets the umask's mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, f".{glob.escape(path.name)}.*.tmp{glob.escape(path.suffix)}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        follow_umask(tmp)
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
