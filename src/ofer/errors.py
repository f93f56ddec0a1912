"""Exceptions whose message is shown to the user as one line (the CLI prints it and exits 2)."""


class OferError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class FaceModelError(OferError):
    """A face-model file is missing, unreadable or has the wrong structure."""


class InputError(OferError):
    """An input file (image, mesh, data folder) is missing or unreadable."""


class CheckpointError(OferError):
    """A checkpoint is missing, corrupt, or was made for another face model."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation (Python's MemoryError, torch's CPU / CUDA allocator errors)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()
