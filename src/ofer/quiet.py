"""Silence the C++ logging of native libraries (MediaPipe, TFLite) that writes straight to fd 2."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    """Redirect file descriptor 2 to /dev/null for the duration (Python's own stderr is flushed first)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
