"""Why a numpy file could not be read, in one line that never advises unpickling."""

from __future__ import annotations

from ..errors import first_line

PICKLE_HINTS = ("pickled", "allow_pickle")


def numpy_error(exc: BaseException) -> str:
    """The first line of a failed ``np.load``'s error; numpy's "contains pickled data, load it with
    ``allow_pickle=``" (what it says of any file without a numpy header) becomes a plain "not a numpy
    file": unpickling a file of unknown origin runs its code, so ofer never suggests it."""
    text = first_line(exc)
    if any(hint in text for hint in PICKLE_HINTS):
        return "not a numpy .npy/.npz file (no numpy header; files of pickled objects are never loaded)"
    return text


__all__ = ["numpy_error"]
