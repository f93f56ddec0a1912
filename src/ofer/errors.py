"""Exceptions whose message is shown to the user as one line (the CLI prints it and exits 2)."""


class OferError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class FaceModelError(OferError):
    """A face-model file is missing, unreadable or has the wrong structure."""


class InputError(OferError):
    """An input file (image, mesh, data folder) is missing or unreadable."""


class CheckpointError(OferError):
    """A checkpoint is missing, corrupt, or was made for another face model."""
