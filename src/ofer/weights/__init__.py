"""Pretrained checkpoints shipped with the package (for the built-in ``default`` face model)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ..errors import CheckpointError

DEFAULT_RUN = "default"


def default_run() -> Path:
    """The folder of the shipped run (``idgen/``, ``idrank/``, ``expgen/``)."""
    path = Path(str(files(__package__) / DEFAULT_RUN))
    if not (path / "idgen" / "last.pt").is_file():
        raise CheckpointError("no pretrained weights are shipped in this installation; pass --checkpoints RUN")
    return path
