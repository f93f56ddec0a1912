"""Training of OFER's networks: checkpoints with their configuration (here), the epoch loop
(:mod:`.loop`) and the trainers (:mod:`.train`: ``TrainOptions``, ``train_diffusion``, ``train_idrank``)."""

from .checkpoint import NETWORKS, RunConfig, load_checkpoint, save_checkpoint

__all__ = ["NETWORKS", "RunConfig", "load_checkpoint", "save_checkpoint"]
