"""Training of IdGen (shape | ArcFace) and ExpGen (expression code | ArcFace || appearance).

The denoiser predicts the noise (epsilon) of a DDPM with T = 1000 linear betas; the loss is L1
(the paper's) or MSE. Default widths follow the paper: ``[S, 50, 10]`` for IdGen and
``[E, 25, 10]`` for ExpGen (S, E = the target dims); the shipped weights use ``256 128 32``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from ..config import require, require_choice
from ..devices import resolve_device
from ..data.shards import EMBEDDING_FIELDS, code_fields, stored_code
from ..diffusion import DDPMScheduler, DDPMSchedulerConfig
from ..errors import InputError
from ..networks import Denoiser, DenoiserConfig
from ..networks.normalization import ConditionNormalizer, Normalizer
from .common import PHOTO_EXPRESSIONS, TrainingData, adamw, run_config
from .loop import run_epochs
from .options import TrainOptions, option, require_widths
from .registry import register
from .resume import resume_checkpoint

DIFFUSION_LOSSES = {"l1": torch.nn.functional.l1_loss, "mse": torch.nn.functional.mse_loss}
# ExpGen's condition: the paper's ArcFace || appearance, or the appearance embedding alone (README, Results)
EXPGEN_CONDITIONS = {"identity+appearance": ("identity", "appearance"), "appearance": ("appearance",)}


@dataclass
class DiffusionOptions(TrainOptions):
    """Options of a denoiser (IdGen, ExpGen).

    Attributes:
        widths: feature widths per level, top first; None: the paper's ``[D, *PAPER_WIDTHS]``.
        loss: ``l1`` (the paper's) or ``mse`` on the noise.
        condition_noise: std of Gaussian noise added to the standardised condition of every training
            row (0: none). A regulariser: without it the denoiser can recognise each of a few thousand
            photo rows by its condition and reproduce its label exactly, hidden parts included.
    """

    PAPER_WIDTHS: ClassVar[tuple[int, ...]] = ()

    widths: Optional[list[int]] = option(
        "--widths", default=None, type=int, nargs="+", metavar="W",
        help="denoiser widths per level, top first (default: the paper's D 50 10 for idgen, D 25 10 for expgen, "
             "D = the target dims; the shipped weights use 256 128 32)")
    loss: str = option("--loss", default="l1", choices=tuple(DIFFUSION_LOSSES),
                       help="diffusion loss on the noise (default l1)")
    condition_noise: float = option("--condition-noise", default=0.0, type=float, metavar="SIGMA",
                                    help="std of Gaussian noise on the standardised condition in training (default 0)")

    def validate(self) -> None:
        super().validate()
        if self.widths is not None:
            require_widths(self.widths)
            self.widths = list(self.widths)
        require_choice(self.loss, "--loss", tuple(DIFFUSION_LOSSES))
        ok = isinstance(self.condition_noise, (int, float)) and not isinstance(self.condition_noise, bool)
        require(ok and math.isfinite(self.condition_noise) and self.condition_noise >= 0,
                f"--condition-noise must be a number >= 0, got {self.condition_noise!r}")

    def resolved_widths(self, target_dim: int) -> list[int]:
        """The widths asked for, or the paper's for a target of ``target_dim`` dims."""
        return list(self.widths) if self.widths is not None else [int(target_dim), *self.PAPER_WIDTHS]


@dataclass
class IdGenOptions(DiffusionOptions):
    network: ClassVar[str] = "idgen"
    help: ClassVar[str] = "train IdGen: shape coefficients | ArcFace (diffusion)"
    PAPER_WIDTHS: ClassVar[tuple[int, ...]] = (50, 10)


@dataclass
class ExpGenOptions(DiffusionOptions):
    network: ClassVar[str] = "expgen"
    help: ClassVar[str] = "train ExpGen: expression code | ArcFace || appearance (diffusion)"
    PAPER_WIDTHS: ClassVar[tuple[int, ...]] = (25, 10)

    photo_expression: str = option(
        "--photo-expression", default="fit", choices=PHOTO_EXPRESSIONS,
        help="expression targets of photo-domain folders: the landmark fit's pseudo-label (fit, default) or "
             "MediaPipe's blendshape scores of the clean picture (mediapipe; ARKit-named face models)")
    condition: str = option(
        "--condition", default="identity+appearance", choices=tuple(EXPGEN_CONDITIONS),
        help="ExpGen's condition: ArcFace || appearance (identity+appearance, the paper's, default) or the "
             "appearance embedding alone (appearance), which leaves it no identity to recognise photo rows by")

    def validate(self) -> None:
        super().validate()
        require_choice(self.photo_expression, "--photo-expression", PHOTO_EXPRESSIONS)
        require_choice(self.condition, "--condition", tuple(EXPGEN_CONDITIONS))
        require(self.condition != "appearance" or self.domain_directions == 0,
                "--condition appearance has no identity embedding to project: pass --domain-directions 0")


def diffusion_task(options: DiffusionOptions) -> tuple[TrainingData, torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """The data, target (N, D), condition (N, C) and encoder roles of IdGen or ExpGen.

    ExpGen's target is the face model's code ``[expression | jaw]`` (D = ``code_dim``), the layout
    that ``split_code`` reads back at inference (the data store the code's jaw part as ``jaw``);
    with ``--photo-expression mediapipe`` the expression of photo-domain rows is MediaPipe's score
    (:meth:`TrainingData.photo_blendshape_expressions`).
    """
    data = TrainingData.from_options(options)
    if options.network == "idgen":
        columns = data.read(["shape", "arcface"]).columns
        return data, columns["shape"], columns["arcface"], ("identity",)
    model = data.face_model
    columns = data.read([*code_fields(model.jaw_dim), "arcface", "appearance"]).columns
    if options.photo_expression == "mediapipe":
        columns["expression"] = data.photo_blendshape_expressions(columns["expression"])
    target = stored_code(columns, model.jaw_dim)
    if target.shape[1] != model.code_dim:
        raise InputError(f"{' '.join(map(str, data.folders))}: expression codes have {target.shape[1]} dims, "
                         f"the face model's code_dim is {model.code_dim}")
    roles = EXPGEN_CONDITIONS[options.condition]
    cond = torch.cat([columns[EMBEDDING_FIELDS[r]] for r in roles], dim=1)
    return data, target, cond, roles


def train_diffusion(options: DiffusionOptions) -> list[dict]:
    """Train the denoiser of ``options.network`` into ``RUN/<network>/``; returns the log."""
    device = resolve_device(options.device)
    checkpoint = resume_checkpoint(options)
    data, target, cond, roles = diffusion_task(options)
    target_norm = Normalizer.fit(target)
    cond_norm = (data.condition_normalizer(cond, options.domain_directions) if "identity" in roles
                 else ConditionNormalizer.fit(cond, 0, 0))
    widths = options.resolved_widths(target.shape[1])
    net_config = DenoiserConfig(input_dim=target.shape[1], cond_dim=cond.shape[1], widths=widths)
    scheduler_config = DDPMSchedulerConfig()
    config = run_config(options, data, roles, net_config, {**target_norm.to_dict("target"), **cond_norm.to_dict()},
                        scheduler=scheduler_config, widths=widths)
    torch.manual_seed(options.seed)
    model = Denoiser(net_config).to(device)
    optimizer = adamw(model, options)
    scheduler = DDPMScheduler(scheduler_config)
    z_target, z_cond = target_norm(target).to(device), cond_norm(cond).to(device)
    T = scheduler_config.num_train_timesteps
    loss_fn = DIFFUSION_LOSSES[options.loss]

    def step(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        on_device = indices.to(device)
        x0, c = z_target[on_device], z_cond[on_device]
        noise = torch.randn(x0.shape, generator=generator).to(device)  # CPU draws: same on every device
        t = torch.randint(0, T, (len(indices),), generator=generator)
        if options.condition_noise > 0:
            c = c + options.condition_noise * torch.randn(c.shape, generator=generator).to(device)
        x_t = scheduler.add_noise(x0, noise, t)
        return loss_fn(model(x_t, t.to(device), c), noise)

    return run_epochs(config, model, optimizer, len(target), step, options, checkpoint, device, mix=data.mix())


@register(IdGenOptions)
def train_idgen(options: IdGenOptions) -> list[dict]:
    return train_diffusion(options)


@register(ExpGenOptions)
def train_expgen(options: ExpGenOptions) -> list[dict]:
    return train_diffusion(options)


__all__ = ["DIFFUSION_LOSSES", "DiffusionOptions", "ExpGenOptions", "IdGenOptions", "diffusion_task",
           "train_diffusion"]
