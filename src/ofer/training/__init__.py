"""Training of OFER's networks: checkpoints with their configuration, the epoch loop, the trainers."""

from .checkpoint import NETWORKS, RunConfig, load_checkpoint, save_checkpoint
from .train import TrainOptions, train_diffusion, train_idrank

__all__ = ["NETWORKS", "RunConfig", "TrainOptions", "load_checkpoint", "save_checkpoint", "train_diffusion", "train_idrank"]
