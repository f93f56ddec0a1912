"""``ofer train focus``: FOCUS's stages (BASELINES.md A.4, A.5, A.11.5), counted in iterations, resumable.

Stages by variant (:data:`~ofer.methods.focus.model.VARIANTS`):

- ``focus``, ``baseline``, ``neighbor``, ``perceptual``: R init with M_pre in L_pixel -> S pretrained on
  the frozen R's M_pre (BCE) -> EM (cycles of ``--em-s-steps`` S-steps then 5x as many R-steps, starting
  with S; the variants differ in L_S's terms). After S's pretraining the weights are also written to
  ``pretrained.pt``: the paper's "Pretrained" row.
- ``mofa``: R alone with an unmasked L_pixel; ``supervised`` (Backbone-Supervised, reads the ground-truth
  visible-face masks): R alone with them. Both get as many R-steps as ``focus`` has in all.

Rates: Adadelta; R at ``--lr`` (0.1) x 0.99 every sixtieth of its initial stage (the paper's 5k of
300k), S pretrained at 0.03 x 0.99 every sixth of its stage (5k of 30k), EM by
:class:`~ofer.methods.focus.schedule.EMSchedule` (R at ``--lr``, S at 0.06 x, x 0.99 every sixth of a
cycle). The training reads pictures and landmarks only (``--landmarks mediapipe``: MediaPipe on the
occluded picture; ``oracle``: the data's ``landmarks2d``), except ``supervised``.

``RUN/focus/last.pt`` is written every ``--save-every`` iterations and at every stage's end with R, S,
both optimisers, the stage and step, the batch generator and order, and torch's RNG, so ``--resume``
continues as if never stopped.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from tqdm import tqdm

from ..config import require, require_choice, require_int
from ..devices import resolve_device
from ..io.atomic import save_figure, torch_save
from ..methods.focus import losses as L
from ..methods.focus.model import NETWORK, SEGMENTING, VARIANTS, XI_KINDS, FocusConfig, FocusModel
from ..methods.focus.schedule import EMSchedule
from ..methods.focus.steps import FocusBatch, r_step, s_pretrain_step, s_step
from ..networks.resnet import BACKBONES
from ..errors import CheckpointError, InputError
from ..runs import save_checkpoint
from .common import TrainingData, run_config
from .focus_data import LANDMARK_SOURCES, PictureSampler, PictureSet, load_pictures
from .options import TrainOptions, option
from .registry import register
from .resume import check_resumable, resume_checkpoint

PRETRAINED_FILE = "pretrained.pt"
LOG_FILE = "log.jsonl"
S_PRETRAIN_LR = 0.03


@dataclass
class IterationOptions(TrainOptions):
    """Options of trainers counted in iterations on pictures with Adadelta (FOCUS and its misfit prior)."""

    epochs: int = 1  # counted in iterations (each trainer's step options); no --epochs
    domain_directions: int = 0  # no ArcFace condition; no --domain-directions
    batch_size: int = option("--batch", default=8, type=int, metavar="N", help="pictures per step (default 8)")
    lr: float = option("--lr", default=0.1, type=float, help="Adadelta rate of R (default 0.1; S: 0.06 x in EM)")
    save_every: int = option("--save-every", default=50, type=int, help="iterations between checkpoints")

    def validate(self) -> None:
        super().validate()
        require_int(self.save_every, "--save-every", 1)
        require(self.data_weights is None, f"ofer train {self.network} draws its pictures uniformly from all --data "
                                           f"folders; --data-weights is not supported")


@dataclass
class FocusOptions(IterationOptions):
    network: ClassVar[str] = NETWORK
    help: ClassVar[str] = "train FOCUS (reconstruction R + segmentation S, EM) or one of its variants on pictures"

    variant: str = option("--variant", default="focus", choices=VARIANTS,
                          help="focus, its ablations (baseline, neighbor, perceptual) or baselines (mofa, supervised)")
    preset: str = option("--preset", default="paper", choices=tuple(L.PRESETS), help="loss forms: paper or code")
    image_size: int = option("--image-size", default=64, type=int, help="picture side (default 64)")
    backbone: str = option("--backbone", default="resnet18", choices=tuple(BACKBONES), help="R's backbone")
    unet_width: int = option("--unet-width", default=16, type=int, help="S's n1 (64 = the paper's 34.5 M)")
    albedo_rank: int = option("--albedo-rank", default=10, type=int, help="albedo components in theta")
    xi: float = option("--xi", default=0.17, type=float, help="M_pre threshold (default 0.17)")
    xi_kind: str = option("--xi-kind", default="squared", choices=XI_KINDS, help="M_pre on squared or unsquared error")
    landmarks: str = option("--landmarks", default="mediapipe", choices=LANDMARK_SOURCES,
                            help="mediapipe (on the occluded picture; faithful) or oracle (the data's landmarks2d)")
    r_init_steps: int = option("--r-init-steps", default=800, type=int, help="R init iterations (default 800)")
    s_pretrain_steps: int = option("--s-pretrain-steps", default=200, type=int, help="S pretraining iterations")
    em_cycles: int = option("--em-cycles", default=2, type=int, help="EM cycles (default 2)")
    em_s_steps: int = option("--em-s-steps", default=100, type=int,
                             help="S-steps per EM cycle; each cycle adds 5x as many R-steps (default 100)")

    def validate(self) -> None:
        super().validate()
        for name in ("r_init_steps", "s_pretrain_steps", "em_cycles", "em_s_steps"):
            require_int(getattr(self, name), "--" + name.replace("_", "-"), 0)
        require_choice(self.landmarks, "--landmarks", LANDMARK_SOURCES)
        self.net_config()  # validates the network options

    def net_config(self) -> FocusConfig:
        return FocusConfig(image_size=self.image_size, backbone=self.backbone, unet_width=self.unet_width,
                           albedo_rank=self.albedo_rank, preset=self.preset, variant=self.variant, xi=self.xi,
                           xi_kind=self.xi_kind)

    def stages(self) -> list[tuple[str, int]]:
        """(stage, iterations) in order; every variant gets the same number of R-steps."""
        em = self.em_cycles * 6 * self.em_s_steps
        if self.variant in SEGMENTING:
            plan = [("r_init", self.r_init_steps), ("s_pretrain", self.s_pretrain_steps), ("em", em)]
        else:
            plan = [("r_" + self.variant, self.r_init_steps + 5 * self.em_cycles * self.em_s_steps)]
        return [(name, steps) for name, steps in plan if steps > 0]


def _decayed(base: float, step: int, steps: int, periods: int) -> float:
    return base * 0.99 ** int(step // max(1.0, steps / periods))


class _Stages:
    """Runs the stage plan on one model and picture set; owns the optimisers, batches and checkpoint."""

    def __init__(self, options: FocusOptions, model: FocusModel, pictures: PictureSet, config, device):
        self.options, self.model, self.config, self.device = options, model, config, device
        self.losses = model.config.losses()
        self.opt_r = torch.optim.Adadelta(model.encoder.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        self.opt_s = torch.optim.Adadelta(model.segmenter.parameters(), lr=options.lr)
        self.em = EMSchedule(s_steps=max(1, options.em_s_steps), cycles=max(1, options.em_cycles), lr_r=options.lr)
        self.sampler = PictureSampler(pictures, options.seed)
        self.stage, self.step = 0, 0

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.model.trainable_state(), "optimizer": {"r": self.opt_r.state_dict(),
                                                                     "s": self.opt_s.state_dict()},
                **self.sampler.state(), "torch_rng": torch.get_rng_state(), "stage": self.stage, "step": self.step}

    def restore(self, checkpoint) -> None:
        payload = checkpoint.payload
        try:
            self.model.load_trainable_state(payload["model"])
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{checkpoint.path}: weights do not match the saved architecture "
                                  f"({str(exc).splitlines()[0]})") from None
        self.opt_r.load_state_dict(payload["optimizer"]["r"])
        self.opt_s.load_state_dict(payload["optimizer"]["s"])
        self.sampler.load(payload)
        torch.set_rng_state(payload["torch_rng"])
        self.stage, self.step = int(payload["stage"]), int(payload["step"])

    def save(self) -> None:
        save_checkpoint(self.options.folder, self.config, self.state())

    # -- batches ----------------------------------------------------------------------------------
    def batch(self) -> FocusBatch:
        return FocusBatch(*self.sampler.next(self.options.batch_size, self.device))

    # -- one iteration ----------------------------------------------------------------------------
    def iterate(self, name: str, step: int, steps: int) -> dict:
        o, cfg, nets = self.options, self.model.config, self.model.networks()
        batch = self.batch()
        if name == "s_pretrain":
            _set_lr(self.opt_s, _decayed(S_PRETRAIN_LR, step, steps, 6))
            return s_pretrain_step(batch, nets, self.opt_s, cfg.xi, cfg.xi_kind)
        if name == "em":
            lr_r, lr_s = self.em.rates(step)
            _set_lr(self.opt_r, lr_r)
            _set_lr(self.opt_s, lr_s)
            if self.em.network_at(step) == "S":
                return {"net": "S", **s_step(batch, nets, self.opt_s, self.losses)}
            return {"net": "R", **r_step(batch, nets, self.opt_r, self.losses, "em", cfg.xi, cfg.xi_kind)}
        _set_lr(self.opt_r, _decayed(o.lr, step, steps, 60))
        source = {"r_init": "pre", "r_mofa": "none", "r_supervised": "given"}[name]
        return r_step(batch, nets, self.opt_r, self.losses, source, cfg.xi, cfg.xi_kind)

    def run(self) -> list[dict]:
        folder, plan = self.options.folder, self.options.stages()
        log = _read_rows(folder)
        for index, (name, steps) in enumerate(plan):
            if index < self.stage:
                continue
            bar = tqdm(range(self.step, steps), desc=f"focus {name}", initial=self.step, total=steps,
                       disable=not self.options.progress, file=sys.stderr, leave=False)
            window, started = [], time.perf_counter()
            for step in bar:
                row = self.iterate(name, step, steps)
                if not all(math.isfinite(v) for k, v in row.items() if k != "net"):
                    raise CheckpointError(f"focus {name}: a loss became {row['loss']} at step {step}; lower --lr")
                window.append(row)
                self.step = step + 1
                if self.step % self.options.save_every == 0 or self.step == steps:
                    log.append(_summary(name, self.step, window, time.perf_counter() - started, self))
                    window, started = [], time.perf_counter()
                    self._advance_if_done(index, name, steps)
                    self.save()
                    _write_rows(folder, log)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            if self.stage == index:  # a stage of 0 remaining steps (resumed at its end)
                self._advance_if_done(index, name, steps)
                self.save()
        _plot(folder, log)
        return log

    def _advance_if_done(self, index: int, name: str, steps: int) -> None:
        if self.step < steps:
            return
        if name == "s_pretrain":
            torch_save({"model": self.model.trainable_state(), "config": self.config.to_dict()},
                       self.options.folder / PRETRAINED_FILE)
        self.stage, self.step = index + 1, 0


def _set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _summary(stage: str, step: int, rows: list[dict], seconds: float, stages: _Stages) -> dict:
    keys = sorted({k for r in rows for k in r if k != "net"})
    out = {"stage": stage, "step": step, "seconds": round(seconds, 2), "lr_r": stages.opt_r.param_groups[0]["lr"],
           "lr_s": stages.opt_s.param_groups[0]["lr"], "loss": sum(r["loss"] for r in rows) / len(rows)}
    for net in sorted({r.get("net", "") for r in rows}):
        part = [r for r in rows if r.get("net", "") == net]
        prefix = f"{net}_" if net else ""
        out.update({prefix + k: sum(r[k] for r in part if k in r) / max(1, sum(k in r for r in part)) for k in keys
                    if any(k in r for r in part)})
    return out


def _read_rows(folder) -> list[dict]:
    path = folder / LOG_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line
    return rows


def _write_rows(folder, rows: list[dict]) -> None:
    from ..io.atomic import write_text

    write_text(folder / LOG_FILE, "".join(json.dumps(r) + "\n" for r in rows))


def _plot(folder, rows: list[dict]) -> None:
    """``loss.png``: each stage's losses against its iterations (R's and S's apart in EM)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(r["stage"] for r in rows))
    if not stages:
        return
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3), dpi=100, squeeze=False)
    for ax, stage in zip(axes[0], stages):
        part = [r for r in rows if r["stage"] == stage]
        for key in [k for k in ("loss", "R_loss", "S_loss") if any(k in r for r in part)]:
            ax.plot([r["step"] for r in part if key in r], [r[key] for r in part if key in r], marker="o",
                    markersize=2, label=key)
        ax.set_title(stage)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(folder / "loss.png", fig)
    plt.close(fig)


@register(FocusOptions)
def train_focus(options: FocusOptions) -> list[dict]:
    """Train FOCUS or a variant; returns the log rows (one per ``--save-every`` iterations)."""
    device = resolve_device(options.device)
    checkpoint = resume_checkpoint(options)
    data = TrainingData.from_options(options)
    torch.manual_seed(options.seed)
    net_config = options.net_config()
    model = FocusModel(data.face_model, net_config).to(device)
    pictures = load_pictures(data, net_config.image_size, options.landmarks, options.folder,
                             with_visible=options.variant == "supervised", progress=options.progress)
    if len(pictures) == 0:
        raise InputError(f"focus: no picture of {', '.join(map(str, data.folders))} has landmarks")
    config = run_config(options, data, ("identity",), net_config, {},
                        extra={"stages": options.stages(), "pictures": len(pictures),
                               "dropped_no_landmarks": pictures.dropped})
    options.folder.mkdir(parents=True, exist_ok=True)
    stages = _Stages(options, model, pictures, config, device)
    if checkpoint is not None:
        check_resumable(type(options), checkpoint, config)
        stages.restore(checkpoint)
    elif (options.folder / LOG_FILE).is_file():
        (options.folder / LOG_FILE).unlink()
    return stages.run()


__all__ = ["FocusOptions", "IterationOptions", "PRETRAINED_FILE", "train_focus"]
