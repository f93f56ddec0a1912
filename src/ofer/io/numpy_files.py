"""Why a numpy file could not be read, in one line that never advises unpickling."""

from __future__ import annotations

import zipfile
import zlib

from ..errors import first_line

# What reading a damaged .npy/.npz raises: zipfile (BadZipFile; NotImplementedError for an unknown
# compression or strong encryption; RuntimeError for a password), zlib while inflating a member
# (numpy reads members lazily, so this can come on first access), numpy (ValueError), the OS.
NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError, RuntimeError)

PICKLE_HINTS = ("pickled", "allow_pickle")


def numpy_error(exc: BaseException) -> str:
    """The first line of a failed ``np.load``'s error; numpy's "contains pickled data, load it with
    ``allow_pickle=``" (what it says of any file without a numpy header) becomes a plain "not a numpy
    file": unpickling a file of unknown origin runs its code, so ofer never suggests it."""
    text = first_line(exc)
    if any(hint in text for hint in PICKLE_HINTS):
        return "not a numpy .npy/.npz file (no numpy header; files of pickled objects are never loaded)"
    return text


__all__ = ["NPZ_ERRORS", "numpy_error"]
