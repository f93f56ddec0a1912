"""What every method needs to load itself: the run folder and the face model a checkpoint was made for."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import CheckpointError, FaceModelError
from ..facemodels import FaceModel, load_face_model, load_face_model_from_record
from ..runs import CHECKPOINT_FILE, Checkpoint, load_checkpoint, network_dir
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


def face_model_of_any(run: Optional[str | Path], face_model: Optional[FaceModel] = None) -> FaceModel:
    """``face_model``; else the face model of ``run``'s first trained network (idgen, regressor); else the
    built-in head (for methods that need no checkpoints)."""
    if face_model is not None:
        return face_model
    if run is not None:
        run = resolve_run(run)
        trained = [net for net in ("idgen", "regressor") if (network_dir(run, net) / CHECKPOINT_FILE).is_file()]
        if trained:
            return face_model_of_run(run, trained[0])
    return load_face_model("default")
