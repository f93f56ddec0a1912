"""Training of IdGen, ExpGen (diffusion on the noise) and IdRank (ListNet over IdGen samples).

Diffusion loss: L1 on the noise (the paper's); ``mse`` is selectable.

Data: a folder written by ``ofer synth train`` (or any folder of shards with the fields
``shape``, ``expression`` [, ``jaw``], ``arcface``, ``appearance`` and a manifest naming the face
model and encoders). Runs go to ``RUN/<network>/``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..data.shards import Manifest, ShardDataset
from ..diffusion import DDPMScheduler, DDPMSchedulerConfig
from ..errors import CheckpointError, InputError
from ..facemodels import load_face_model
from ..networks import Denoiser, DenoiserConfig, IdRank, IdRankConfig, candidate_errors, listnet_loss
from ..pipeline.generator import CoefficientGenerator, rank_vertex_subset
from ..pipeline.normalization import ConditionNormalizer, Normalizer
from .checkpoint import RunConfig, network_dir
from .loop import LoopSettings, run_epochs


DIFFUSION_LOSSES = {"mse": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss}


@dataclass
class TrainOptions:
    """Settings shared by the three ``ofer train`` commands (defaults sized for a 2-core CPU)."""

    data: Path
    run: Path
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    resume: bool = False
    progress: bool = True
    widths: Optional[list[int]] = None
    # IdRank
    candidates: int = 100
    rank_images: int = 2000
    rank_sampler: str = "ddim"
    rank_steps: int = 25
    rank_vertices: int = 512
    rank_widths: list[int] = field(default_factory=lambda: [1024, 256, 64])
    tau: float = 1.0
    # render-domain directions projected out of the identity embedding (see pipeline.normalization)
    domain_directions: int = 2
    # diffusion loss on the noise: "l1" (the paper's) or "mse"
    loss: str = "l1"


def training_columns(data: Path, fields: list[str]) -> tuple[Manifest, dict[str, torch.Tensor]]:
    dataset = ShardDataset(data)
    arrays = dataset.arrays(fields)
    return dataset.manifest, {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}


def _encoders(manifest: Manifest, roles: tuple[str, ...]) -> dict:
    missing = [r for r in roles if r not in manifest.encoders]
    if missing:
        raise InputError(f"the data's manifest does not name its {', '.join(missing)} encoder(s)")
    return {r: manifest.encoders[r] for r in roles}


def _condition_normalizer(cond: torch.Tensor, manifest: Manifest, options: TrainOptions) -> ConditionNormalizer:
    """Fit the condition normalisation; every condition starts with the identity embedding."""
    identity_dim = _encoders(manifest, ("identity",))["identity"]["dim"]
    return ConditionNormalizer.fit(cond, identity_dim, options.domain_directions)


def _data_record(options: TrainOptions, manifest: Manifest) -> dict:
    return {"path": str(options.data), "checksum": manifest.dataset_checksum(), "num_samples": manifest.num_samples}


def _training_record(options: TrainOptions) -> dict:
    return {"epochs": options.epochs, "batch_size": options.batch_size, "lr": options.lr, "seed": options.seed,
            "weight_decay": options.weight_decay, "domain_directions": options.domain_directions,
            "loss": options.loss}


def diffusion_task(network: str, manifest: Manifest, columns: dict[str, torch.Tensor]):
    """Target (N, D), condition (N, C) and encoder roles of IdGen or ExpGen."""
    if network == "idgen":
        return columns["shape"], columns["arcface"], ("identity",)
    target = columns["expression"]
    if "jaw" in columns and columns["jaw"].shape[1] > 0:
        target = torch.cat([target, columns["jaw"]], dim=1)
    return target, torch.cat([columns["arcface"], columns["appearance"]], dim=1), ("identity", "appearance")


def train_diffusion(network: str, options: TrainOptions) -> list[dict]:
    """Train IdGen (shape | ArcFace) or ExpGen (expression [+ jaw] | ArcFace || appearance)."""
    if options.loss not in DIFFUSION_LOSSES:
        raise ValueError(f"loss must be one of {sorted(DIFFUSION_LOSSES)}, got {options.loss!r}")
    fields = ["shape", "arcface"] if network == "idgen" else ["expression", "arcface", "appearance"]
    manifest = Manifest.load(options.data)
    if network == "expgen" and manifest.face_model.get("jaw_dim", 0) > 0:
        fields.append("jaw")
    manifest, columns = training_columns(options.data, fields)
    target, cond, roles = diffusion_task(network, manifest, columns)
    target_norm = Normalizer.fit(target)
    cond_norm = _condition_normalizer(cond, manifest, options)
    net_config = DenoiserConfig(input_dim=target.shape[1], cond_dim=cond.shape[1], widths=options.widths)
    scheduler_config = DDPMSchedulerConfig()
    config = RunConfig(
        network=network,
        face_model=manifest.face_model,
        encoders=_encoders(manifest, roles),
        net=net_config.to_dict(),
        scheduler=scheduler_config.to_dict(),
        normalization={**target_norm.to_dict("target"), **cond_norm.to_dict()},
        data=_data_record(options, manifest),
        training=_training_record(options),
    )
    torch.manual_seed(options.seed)
    model = Denoiser(net_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    scheduler = DDPMScheduler(scheduler_config)
    z_target, z_cond = target_norm(target), cond_norm(cond)
    T = scheduler_config.num_train_timesteps
    loss_fn = DIFFUSION_LOSSES[options.loss]

    def step(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x0, c = z_target[indices], z_cond[indices]
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, T, (len(indices),), generator=generator)
        x_t = scheduler.add_noise(x0, noise, t)
        return loss_fn(model(x_t, t, c), noise)

    settings = LoopSettings(options.epochs, options.batch_size, options.seed, options.resume, options.progress)
    return run_epochs(network_dir(options.run, network), config, model, optimizer, len(target), step, settings)


def build_rank_candidates(options: TrainOptions, folder: Path) -> dict[str, torch.Tensor]:
    """Sample N shapes per training image with the frozen IdGen and measure their errors (cached)."""
    cache = folder / "candidates.pt"
    manifest, columns = training_columns(options.data, ["shape", "arcface", "appearance"])
    count = min(options.rank_images, manifest.num_samples)
    signature = {"images": count, "candidates": options.candidates, "sampler": options.rank_sampler,
                 "steps": options.rank_steps, "vertices": options.rank_vertices, "seed": options.seed,
                 "data": manifest.dataset_checksum()}
    if cache.is_file():
        stored = torch.load(cache, weights_only=True)
        if stored.get("signature") == signature:
            return stored
    model = load_face_model(manifest.face_model["spec"])
    generator_net = CoefficientGenerator.from_checkpoint(network_dir(options.run, "idgen"), "idgen",
                                                         model.info().to_dict())
    with torch.no_grad():
        vertex_ids = rank_vertex_subset(model.front_mask, model().vertices[0], options.rank_vertices)
    picks = torch.randperm(manifest.num_samples, generator=torch.Generator().manual_seed(options.seed))[:count].sort().values
    generator = torch.Generator().manual_seed(options.seed + 1)
    candidates, errors = [], []
    from tqdm import tqdm

    chunk = max(1, 2048 // options.candidates)
    for start in tqdm(range(0, count, chunk), desc="idrank candidates", disable=not options.progress, file=sys.stderr):
        idx = picks[start : start + chunk]
        shapes = generator_net.sample(columns["arcface"][idx], options.candidates, options.rank_sampler,
                                      options.rank_steps, generator)
        with torch.no_grad():
            B, N, S = shapes.shape
            cand = model(shapes.reshape(B * N, S)).vertices[:, vertex_ids].view(B, N, -1, 3) * 1000
            gt = model(columns["shape"][idx]).vertices[:, vertex_ids] * 1000
        candidates.append(cand.half())
        errors.append(candidate_errors(cand, gt))
    result = {
        "signature": signature,
        "indices": picks,
        "candidates": torch.cat(candidates),
        "errors": torch.cat(errors),
        "cond": torch.cat([columns["arcface"][picks], columns["appearance"][picks]], dim=1),
        "vertex_ids": vertex_ids,
    }
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(result, cache)
    return result


def train_idrank(options: TrainOptions) -> list[dict]:
    """Train IdRank with ListNet on candidate sets from the frozen IdGen of the same run."""
    folder = network_dir(options.run, "idrank")
    manifest = Manifest.load(options.data)
    if not (network_dir(options.run, "idgen") / "last.pt").is_file():
        raise CheckpointError(f"{options.run}: train idgen first (no {network_dir(options.run, 'idgen') / 'last.pt'})")
    data = build_rank_candidates(options, folder)
    candidates, errors, cond = data["candidates"].float(), data["errors"], data["cond"]
    cond_norm = _condition_normalizer(cond, manifest, options)
    net_config = IdRankConfig(num_vertices=candidates.shape[2], cond_dim=cond.shape[1], widths=list(options.rank_widths))
    config = RunConfig(
        network="idrank",
        face_model=manifest.face_model,
        encoders=_encoders(manifest, ("identity", "appearance")),
        net=net_config.to_dict(),
        normalization=cond_norm.to_dict(),
        data=_data_record(options, manifest),
        training={**_training_record(options), "tau": options.tau},
        extra={"vertex_ids": data["vertex_ids"].tolist(), "candidates": options.candidates,
               "sampler": options.rank_sampler, "steps": options.rank_steps, "images": len(candidates)},
    )
    torch.manual_seed(options.seed)
    net = IdRank(net_config)
    net.fit_input_normalization(candidates[: min(len(candidates), 512)])
    optimizer = torch.optim.AdamW(net.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    z_cond = cond_norm(cond)

    def step(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return listnet_loss(net(candidates[indices], z_cond[indices]), errors[indices], options.tau)

    settings = LoopSettings(options.epochs, options.batch_size, options.seed, options.resume, options.progress)
    return run_epochs(folder, config, net, optimizer, len(candidates), step, settings)


def train_regressor(options: TrainOptions) -> list[dict]:
    """Train the deterministic ArcFace -> shape regressor (baseline) into ``RUN/regressor``."""
    from ..baselines.regressor import NETWORK, RegressorConfig, ShapeRegressor

    manifest, columns = training_columns(options.data, ["shape", "arcface"])
    target, cond = columns["shape"], columns["arcface"]
    target_norm = Normalizer.fit(target)
    cond_norm = _condition_normalizer(cond, manifest, options)
    net_config = RegressorConfig(input_dim=cond.shape[1], output_dim=target.shape[1])
    config = RunConfig(
        network=NETWORK,
        face_model=manifest.face_model,
        encoders=_encoders(manifest, ("identity",)),
        net=net_config.to_dict(),
        normalization={**target_norm.to_dict("target"), **cond_norm.to_dict()},
        data=_data_record(options, manifest),
        training=_training_record(options),
    )
    torch.manual_seed(options.seed)
    net = ShapeRegressor(net_config)
    optimizer = torch.optim.AdamW(net.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    z_target, z_cond = target_norm(target), cond_norm(cond)

    def step(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.nn.functional.mse_loss(net(z_cond[indices]), z_target[indices])

    settings = LoopSettings(options.epochs, options.batch_size, options.seed, options.resume, options.progress)
    return run_epochs(network_dir(options.run, NETWORK), config, net, optimizer, len(target), step, settings)

