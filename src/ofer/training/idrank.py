"""Training of IdRank: ListNet over candidate sets drawn by the frozen IdGen of the same run.

The candidates are drawn the way :class:`~ofer.methods.ofer.method.OferMethod` draws them at
inference (same sampler and steps, clamped with ``face_model.clamp_shape``); the sampler and
steps are recorded in the run config (``extra["sampler"]``, ``extra["steps"]``) so inference can
default to them. Candidate sets are cached in ``RUN/idrank/candidates.pt`` under a signature of
everything they depend on (data, IdGen checkpoint, sampler, steps, counts, seed).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from tqdm import tqdm

from ..config import require_choice, require_int
from ..devices import resolve_device
from ..errors import CheckpointError
from ..io.atomic import torch_save
from ..methods.base import MAX_TIMESTEPS, SAMPLERS
from ..methods.ofer.generator import CoefficientGenerator, rank_vertex_subset
from ..networks import IdRank, IdRankConfig, candidate_errors, listnet_loss
from ..runs import CHECKPOINT_FILE, load_checkpoint, network_dir
from .common import TrainingData, adamw, run_config
from .loop import EpochMix, run_epochs
from .options import TrainOptions, option, require_positive, require_widths
from .registry import register
from .resume import resume_checkpoint

CANDIDATES_FILE = "candidates.pt"


@dataclass
class IdRankOptions(TrainOptions):
    """Options of IdRank (ListNet on ``candidates`` IdGen samples of ``rank_images`` training images)."""

    network: ClassVar[str] = "idrank"
    help: ClassVar[str] = "train IdRank: ListNet ranking of IdGen samples (train idgen first)"

    batch_size: int = option("--batch", default=16, type=int, metavar="N",
                             help="candidate sets per batch (default %(default)s)")
    lr: float = option("--lr", default=3e-4, type=float, help="AdamW learning rate (default %(default)s)")
    widths: list[int] = option("--widths", factory=lambda: [1024, 256, 64], type=int, nargs="+", metavar="W",
                               help="IdRank hidden widths (default 1024 256 64; the paper's 4096 1024 256 64)")
    candidates: int = option("--candidates", default=100, type=int, help="IdGen samples per training image (N)")
    rank_images: int = option("--rank-images", default=2000, type=int, help="training images used for IdRank")
    rank_sampler: str = option("--rank-sampler", default="ddim", choices=SAMPLERS,
                               help="sampler of the candidates (default ddim; use the one used at inference)")
    rank_steps: int = option("--rank-steps", default=25, type=int, help="denoising steps of the candidates")
    rank_vertices: int = option("--rank-vertices", default=512, type=int, help="front vertices fed to IdRank (0 = all)")
    tau: float = option("--tau", default=1.0, type=float, help="ListNet temperature (mm)")

    def validate(self) -> None:
        super().validate()
        require_widths(self.widths)
        self.widths = list(self.widths)
        require_int(self.candidates, "--candidates", 2, 10_000)
        require_int(self.rank_images, "--rank-images", 1)
        require_choice(self.rank_sampler, "--rank-sampler", SAMPLERS)
        require_int(self.rank_steps, "--rank-steps", 1, MAX_TIMESTEPS)
        require_int(self.rank_vertices, "--rank-vertices", 0)
        require_positive(self.tau, "--tau")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def candidate_signature(options: IdRankOptions, data: TrainingData, count: int, idgen_file: Path) -> dict:
    """Everything the cached candidate sets depend on."""
    return {"images": count, "candidates": options.candidates, "sampler": options.rank_sampler,
            "steps": options.rank_steps, "vertices": options.rank_vertices, "seed": options.seed,
            "data": data.checksum(), "idgen": _file_digest(idgen_file),
            "face_model": data.face_model_info.get("fingerprint")}


def _draw(generator_net: CoefficientGenerator, data: TrainingData, picks: torch.Tensor, vertex_ids: torch.Tensor,
          options: IdRankOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate front vertices (K, N, V', 3) mm (float16) and their errors (K, N) mm for images ``picks``."""
    model, columns = data.face_model, data.columns
    generator = torch.Generator().manual_seed(options.seed + 1)
    candidates, errors = [], []
    chunk = max(1, 2048 // options.candidates)
    for start in tqdm(range(0, len(picks), chunk), desc="idrank candidates", disable=not options.progress,
                      file=sys.stderr):
        idx = picks[start : start + chunk]
        shapes = generator_net.sample(columns["arcface"][idx], options.candidates, options.rank_sampler,
                                      options.rank_steps, generator).cpu()
        with torch.no_grad():
            B, N, S = shapes.shape
            shapes = model.clamp_shape(shapes)  # as at inference
            cand = model(shapes.reshape(B * N, S)).vertices[:, vertex_ids].view(B, N, -1, 3) * 1000
            gt = model(columns["shape"][idx]).vertices[:, vertex_ids] * 1000
        candidates.append(cand.half())
        errors.append(candidate_errors(cand, gt))
    return torch.cat(candidates), torch.cat(errors)


def build_rank_candidates(options: IdRankOptions, data: TrainingData, device: torch.device) -> dict[str, torch.Tensor]:
    """Sample N shapes per training image with the frozen IdGen and measure their errors (cached)."""
    idgen_folder = network_dir(options.run, "idgen")
    cache = options.folder / CANDIDATES_FILE
    count = min(options.rank_images, data.num_samples)
    signature = candidate_signature(options, data, count, idgen_folder / CHECKPOINT_FILE)
    if cache.is_file():
        stored = torch.load(cache, weights_only=True)
        if stored.get("signature") == signature:
            return stored
    data.read(["shape", "arcface", "appearance"])
    encoders = data.encoders(("identity",))
    generator_net = CoefficientGenerator.from_checkpoint(load_checkpoint(idgen_folder, "idgen"),
                                                         data.face_model_info, encoders).to(device)
    model = data.face_model
    with torch.no_grad():
        vertex_ids = rank_vertex_subset(model.front_mask, model().vertices[0], options.rank_vertices)
    picks = pick_images(data, count, options.seed)
    candidates, errors = _draw(generator_net, data, picks, vertex_ids, options)
    columns = data.columns
    result = {"signature": signature, "indices": picks, "candidates": candidates, "errors": errors,
              "cond": torch.cat([columns["arcface"][picks], columns["appearance"][picks]], dim=1),
              "vertex_ids": vertex_ids}
    torch_save(result, cache)
    return result


def pick_images(data: TrainingData, count: int, seed: int) -> torch.Tensor:
    """The sorted rows whose candidate sets IdRank trains on: ``count`` rows drawn uniformly (plain
    concatenation), or with ``--data-weights`` each folder's share of ``count`` (at most all its rows)."""
    generator = torch.Generator().manual_seed(seed)
    if data.weights is None:
        return torch.randperm(data.num_samples, generator=generator)[:count].sort().values
    quotas = EpochMix.from_weights(data.sizes, data.weights, total=count).quotas
    picks, offset = [], 0
    for size, quota in zip(data.sizes, quotas):
        picks.append(torch.randperm(size, generator=generator)[: min(size, quota)] + offset)
        offset += size
    return torch.cat(picks).sort().values


@register(IdRankOptions)
def train_idrank(options: IdRankOptions) -> list[dict]:
    """Train IdRank with ListNet on candidate sets from the frozen IdGen of the same run."""
    device = resolve_device(options.device)
    idgen_file = network_dir(options.run, "idgen") / CHECKPOINT_FILE
    if not idgen_file.is_file():
        raise CheckpointError(f"{options.run}: train idgen first (no {idgen_file})")
    checkpoint = resume_checkpoint(options)
    data = TrainingData.from_options(options)
    ranked = build_rank_candidates(options, data, device)
    candidates, errors, cond = ranked["candidates"].float(), ranked["errors"], ranked["cond"]
    cond_norm = data.condition_normalizer(cond, options.domain_directions, rows=ranked["indices"])
    net_config = IdRankConfig(num_vertices=candidates.shape[2], cond_dim=cond.shape[1], widths=list(options.widths))
    extra = {"vertex_ids": ranked["vertex_ids"].tolist(), "candidates": options.candidates,
             "sampler": options.rank_sampler, "steps": options.rank_steps, "images": len(candidates),
             "idgen": ranked["signature"]["idgen"]}
    config = run_config(options, data, ("identity", "appearance"), net_config, cond_norm.to_dict(), extra=extra)
    torch.manual_seed(options.seed)
    net = IdRank(net_config)
    net.fit_input_normalization(candidates[: min(len(candidates), 512)])
    net = net.to(device)
    optimizer = adamw(net, options)
    candidates, errors, z_cond = candidates.to(device), errors.to(device), cond_norm(cond).to(device)

    def step(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        on_device = indices.to(device)
        return listnet_loss(net(candidates[on_device], z_cond[on_device]), errors[on_device], options.tau)

    return run_epochs(config, net, optimizer, len(candidates), step, options, checkpoint, device,
                      mix=data.mix(ranked["indices"]))


__all__ = ["CANDIDATES_FILE", "IdRankOptions", "build_rank_candidates", "candidate_signature", "pick_images",
           "train_idrank"]
