"""The regressor as a method: one regressed neutral face per image (one hypothesis, neutral expression)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ...devices import resolve_device
from ...errors import CheckpointError
from ...facemodels import FaceModel
from ...networks.normalization import ConditionNormalizer, Normalizer
from ...runs import build_config, check_face_model, load_checkpoint, load_weights, network_dir
from ..base import Method, Reconstruction, ReconstructionSettings, make_reconstruction
from ..loading import face_model_of, resolve_run
from ..registry import register
from .network import NETWORK, RegressorConfig, ShapeRegressor


@register
class ShapeRegressorMethod(Method):
    name = "regressor"
    label = "regressor"
    description = "deterministic ArcFace -> shape regressor (MICA-like), neutral expression"

    def __init__(self, face_model: FaceModel, net: ShapeRegressor, target_norm: Normalizer,
                 cond_norm: ConditionNormalizer, encoders: dict, run):
        self.face_model = face_model.eval()
        self.net = net.eval()
        self.target_norm, self.cond_norm = target_norm, cond_norm
        self.encoders = dict(encoders)
        self.run = run
        self.device = torch.device("cpu")

    @classmethod
    def from_run(cls, run=None, face_model: Optional[FaceModel] = None, device="cpu") -> "ShapeRegressorMethod":
        """Load ``RUN/regressor`` (``ofer train regressor``); the shipped weights include none."""
        if run is None:
            raise CheckpointError("the shipped weights include no regressor: train one (ofer train regressor "
                                  "--data DATA -o RUN) and pass --checkpoints RUN")
        run = resolve_run(run)
        device = resolve_device(device)
        checkpoint = load_checkpoint(network_dir(run, NETWORK), NETWORK)
        face_model = face_model or face_model_of(checkpoint)
        check_face_model(checkpoint.config, face_model.info().to_dict(), checkpoint.path)
        net = load_weights(ShapeRegressor(build_config(RegressorConfig, checkpoint.config.net, checkpoint)), checkpoint)
        norm = checkpoint.config.normalization
        return cls(face_model, net, Normalizer.from_dict(norm, "target", checkpoint.path),
                   ConditionNormalizer.from_dict(norm, checkpoint.path), checkpoint.config.encoders, run).to(device)

    def modules(self) -> list[torch.nn.Module]:
        return [self.net]

    def checkpoint_record(self) -> dict:
        return {"run": str(self.run), NETWORK: str(network_dir(self.run, NETWORK) / "last.pt")}

    @torch.no_grad()
    def reconstruct_embeddings(self, identity: np.ndarray, appearance: np.ndarray, settings: ReconstructionSettings,
                               keys: Sequence) -> list[Reconstruction]:
        model = self.face_model
        identity = np.asarray(identity, np.float32)
        out = []
        for b, key in enumerate(keys):
            cond = self.cond_norm(torch.from_numpy(identity[b : b + 1])).to(self.device)
            shape = model.clamp_shape(self.target_norm.inverse(self.net(cond).cpu()))
            codes = torch.zeros(1, model.code_dim)
            out.append(make_reconstruction(model, self.name, str(key), shape, torch.zeros(1), 0, codes,
                                           identity_embedding=identity[b]))
        return out
