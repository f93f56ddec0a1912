"""Output paths checked before any compute: a command that cannot write fails in one line at once,
not after minutes of work (``-o`` a regular file, a read-only folder, a folder given for a file)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OferError


def _writable_ancestor(path: Path, flag: str, shown: Path) -> None:
    """The nearest existing folder at or above ``path`` must be a folder we may create files in."""
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        if ancestor.is_symlink():
            raise OferError(f"{flag} {shown}: {ancestor} is a broken symbolic link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OferError(f"{flag} {shown}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OferError(f"{flag} {shown}: {ancestor} is not writable")


def output_folder(path, flag: str = "-o") -> Path:
    """``path`` as a results folder: an existing folder or one that can be made; else one-line :class:`OferError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OferError(f"{flag} {path}: exists and is not a folder")
    _writable_ancestor(path, flag, path)
    return path


def output_file(path, flag: str = "-o") -> Path:
    """``path`` as a file to write: not a folder, in a folder that exists or can be made and is writable."""
    path = Path(path)
    if path.is_dir():
        raise OferError(f"{flag} {path}: is a folder; give a file name")
    _writable_ancestor(path.parent, flag, path)
    return path


__all__ = ["output_file", "output_folder"]
