"""Training of OFER's networks and the baselines: one trainer per network, registered by name.

::

    from ofer import training
    training.available()                       # ["idgen", "expgen", "focus", "idrank", "regressor"]
    training.train("idgen", data="data/train", run="runs/x", epochs=3, batch_size=64)

Modules: :mod:`.options` (validated option classes, flags for ``ofer train``), :mod:`.registry`,
:mod:`.common` (data + face model, the RunConfig helper), :mod:`.loop` (epochs, exact resume),
:mod:`.resume` (what ``--resume`` may change), and one module per trainer (:mod:`.diffusion`,
:mod:`.idrank`, :mod:`.regressor`, :mod:`.focus` with its pictures in :mod:`.focus_data`). Checkpoints are :mod:`ofer.runs`.
"""

from . import diffusion, focus, focus_misfit, idrank, regressor  # noqa: F401  (register the trainers)
from .diffusion import ExpGenOptions, IdGenOptions
from .idrank import IdRankOptions
from .options import TrainOptions
from .regressor import RegressorOptions
from .registry import Trainer, available, get, register


def train(name: str, **options) -> list[dict]:
    """Validate ``options`` for trainer ``name`` and train; returns the log (one dict per epoch)."""
    return get(name).run(**options)


__all__ = ["ExpGenOptions", "IdGenOptions", "IdRankOptions", "RegressorOptions", "TrainOptions", "Trainer",
           "available", "get", "register", "train"]
