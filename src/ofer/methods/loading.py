"""What every method needs to load itself: the run folder and the face model a checkpoint was made for."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import CheckpointError, FaceModelError
from ..facemodels import FaceModel, load_face_model_from_record
from ..runs import Checkpoint, load_checkpoint, network_dir
from ..weights import default_run


def resolve_run(run: Optional[str | Path]) -> Path:
    """``run`` as a folder that exists; ``None``: the weights shipped for the built-in head."""
    if run is None:
        return default_run()
    run = Path(run)
    if not run.is_dir():
        raise CheckpointError(f"{run}: checkpoint folder not found")
    return run


def face_model_of(checkpoint: Checkpoint) -> FaceModel:
    """The face model a checkpoint was trained for, rebuilt from the fingerprinted record it stores."""
    record = checkpoint.config.face_model
    try:
        return load_face_model_from_record(record)
    except FaceModelError as exc:
        raise CheckpointError(f"{checkpoint.path}: trained for face model {record.get('spec')!r}, which cannot be "
                              f"loaded here ({exc})") from None


def face_model_of_run(run: Path, network: str) -> FaceModel:
    return face_model_of(load_checkpoint(network_dir(run, network), network))
