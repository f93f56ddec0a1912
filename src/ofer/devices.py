"""``--device cpu|cuda|mps``: resolve a device name once, with a one-line error where it is missing."""

from __future__ import annotations

import torch

from .config import ConfigError

DEVICES = ("cpu", "cuda", "mps")


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    """The torch device for ``name`` (``cuda:1`` allowed); ConfigError if this machine has none."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "cpu").strip().lower()
    kind = name.split(":", 1)[0]
    if kind not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device on this machine (this torch build: {torch.__version__})")
    if kind == "cuda" and ":" in name:
        index = name.split(":", 1)[1]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {name}: MPS is not available on this machine")
    return torch.device(name)
