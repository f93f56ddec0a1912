"""OFER inference: image -> ranked identity + expression hypotheses.

::

    method = OFER.from_run("runs/default")                 # RUN/{idgen,idrank,expgen}/last.pt, each read once
    rec = method.reconstruct([load_image("photo.jpg")])[0]   # Reconstruction (or InputError: no face)
    rec.identity_vertices, rec.expression_vertices, rec.kpt7
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ...config import ConfigError
from ...devices import resolve_device
from ...facemodels import FaceModel
from ...runs import load_checkpoint, network_dir
from ..base import Method, Reconstruction, ReconstructionSettings, image_generator, make_reconstruction
from ..loading import face_model_of, resolve_run
from ..registry import register
from .generator import CoefficientGenerator, ShapeRanker

NETWORKS = ("idgen", "idrank", "expgen")
BYTES_PER_SHAPE = 50_000  # peak memory per IdGen candidate (20,000 candidates: 1.6 GB measured)


def available_memory() -> Optional[int]:
    """Bytes of memory available now (Linux / macOS), or None where the system does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
DEFAULT_DDIM_STEPS = 50


@register
class OFER(Method):
    """IdGen samples N shapes from ArcFace, IdRank picks one, ExpGen samples M expressions."""

    name = "ofer"
    label = "OFER"
    description = "OFER: diffusion identity samples ranked by IdRank, diffusion expression hypotheses"

    def __init__(self, face_model: FaceModel, idgen: CoefficientGenerator, idrank: ShapeRanker,
                 expgen: CoefficientGenerator, run: Path):
        self.face_model = face_model.eval()
        self.idgen, self.idrank, self.expgen = idgen, idrank, expgen
        self.run = Path(run)
        self.encoders = {**idgen.config.encoders, **expgen.config.encoders}
        self.device = torch.device("cpu")
        self._warned: set = set()

    @classmethod
    def from_run(cls, run=None, face_model: Optional[FaceModel] = None, device="cpu") -> "OFER":
        """Load the three networks of a run folder (default: the shipped weights) and their face model.

        Raises:
            CheckpointError: missing/corrupt checkpoints, networks trained for other face models or encoders.
        """
        run = resolve_run(run)
        device = resolve_device(device)
        checkpoints = {net: load_checkpoint(network_dir(run, net), net) for net in NETWORKS}
        face_model = face_model or face_model_of(checkpoints["idgen"])
        info = face_model.info().to_dict()
        idgen = CoefficientGenerator.from_checkpoint(checkpoints["idgen"], info)
        expgen = CoefficientGenerator.from_checkpoint(checkpoints["expgen"], info, idgen.config.encoders)
        idrank = ShapeRanker.from_checkpoint(checkpoints["idrank"], info, {**idgen.config.encoders, **expgen.config.encoders})
        return cls(face_model, idgen, idrank, expgen, run).to(device)

    def modules(self) -> list[torch.nn.Module]:
        return [self.idgen, self.idrank, self.expgen]

    def checkpoint_record(self) -> dict:
        return {"run": str(self.run), **{net: str(network_dir(self.run, net) / "last.pt") for net in NETWORKS}}

    # -- settings -------------------------------------------------------------------------------
    def sampling_steps(self, settings: ReconstructionSettings) -> Optional[int]:
        """Denoising steps: as asked; by default those IdRank's candidates were drawn with (same sampler),
        else DDIM 50 / the full DDPM chain."""
        if settings.steps is not None:
            return settings.steps
        sampler, steps = self.idrank.candidate_sampler
        if sampler == settings.sampler and steps:
            return int(steps)
        return DEFAULT_DDIM_STEPS if settings.sampler == "ddim" else None

    def memory_estimate(self, settings: ReconstructionSettings) -> int:
        """Bytes one image needs beyond the loaded networks (measured: about 45 KB per candidate
        shape; the M expressive meshes and their placed copies)."""
        meshes = settings.expressions * self.face_model.num_vertices * 3 * 4
        return settings.shapes * BYTES_PER_SHAPE + 4 * meshes

    def validate(self, settings: ReconstructionSettings) -> None:
        """Refuse settings these checkpoints cannot run (one line), before any network runs."""
        need, have = self.memory_estimate(settings), available_memory()
        if have is not None and need > have:
            raise ConfigError(f"--shapes {settings.shapes} --expressions {settings.expressions} need about "
                              f"{need / 2**30:.1f} GiB per image, {have / 2**30:.1f} GiB is available; ask for fewer")
        steps = self.sampling_steps(settings)
        for net in (self.idgen, self.expgen):
            T = net.num_train_timesteps
            if steps is not None and steps > T:
                raise ConfigError(f"--steps must be at most {T} (the {net.config.network} scheduler's T), got {steps}")
        sampler, trained_steps = self.idrank.candidate_sampler
        if sampler is not None and (sampler, trained_steps) != (settings.sampler, steps) and "rank" not in self._warned:
            self._warned.add("rank")
            warnings.warn(f"IdRank was trained on {sampler} {trained_steps}-step IdGen samples; ranking "
                          f"{settings.sampler} {steps or 'full'}-step samples may rank worse", stacklevel=2)

    # -- reconstruction -------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct_embeddings(self, identity: np.ndarray, appearance: np.ndarray, settings: ReconstructionSettings,
                               keys: Sequence) -> list[Reconstruction]:
        """Run the three networks on (B, 512) identity and (B, D) appearance embeddings, one image at a time."""
        self.validate(settings)
        steps = self.sampling_steps(settings)
        identity = np.asarray(identity, np.float32)
        appearance = np.asarray(appearance, np.float32)
        return [self._one(identity[b : b + 1], appearance[b : b + 1], settings, steps, key) for b, key in enumerate(keys)]

    def _one(self, identity: np.ndarray, appearance: np.ndarray, settings: ReconstructionSettings,
             steps: Optional[int], key) -> Reconstruction:
        model = self.face_model
        ident = torch.from_numpy(identity)
        parts = {"identity": ident, "appearance": torch.from_numpy(appearance)}
        cond = torch.cat([parts["identity"], parts["appearance"]], dim=1)
        expgen_cond = torch.cat([parts[role] for role in self.expgen.config.encoders], dim=1)  # its training order
        timings = {}
        t0 = time.perf_counter()
        shapes = self.idgen.sample(ident, settings.shapes, settings.sampler, steps,
                                   image_generator(settings.seed, key, "idgen"))[0]  # (N, S)
        shapes = model.clamp_shape(shapes)
        timings["idgen"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores, best = self.idrank.rank(model, shapes[None], cond)
        timings["idrank"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        codes = self.expgen.sample(expgen_cond, settings.expressions, settings.sampler, steps,
                                   image_generator(settings.seed, key, "expgen"))[0]  # (M, C)
        codes = model.clamp_expression(codes)
        timings["expgen"] = time.perf_counter() - t0
        return make_reconstruction(model, self.name, str(key), shapes, scores[0], int(best[0]), codes,
                                   settings.jaw_scale, identity_embedding=identity[0],
                                   appearance_embedding=appearance[0], timings=timings)
