"""``ofer train focus-misfit -o RUN``: FOCUS's misfit prior (BASELINES.md A.6, A.11.4) for a trained run.

1. Synthetic pictures of the linear model: theta from the prior (:func:`~ofer.methods.focus.misfit.prior_theta`),
   drawn by the FOCUS decoder itself on black, no occluders, no degradation; ``--pictures`` to train on
   and ``--heldout`` more for E_MP. Their landmarks come from the FOCUS run's source: MediaPipe on the
   picture drawn at 4x the size (a picture where it finds no face is dropped), or the decoder's own
   projected landmarks for ``oracle`` runs.
2. R_syn, a fresh network of R's architecture, trained with L_R and an unmasked L_pixel for ``--steps``
   iterations (Adadelta, the R-init rate rule).
3. E_MP = the signed mean of (R_syn's mesh - the true mesh) over the held-out pictures, in the canonical
   model frame (metres), for the neutral and for the expressive meshes.

``RUN/focus-misfit/last.pt`` holds R_syn, E_MP and the training state (``misfit.png``: E_MP^neutral per axis) (every ``--save-every``
iterations: ``--resume`` continues); the pictures are cached beside it. ``--method focus-mp`` reads it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from ..config import require_int
from ..devices import resolve_device
from ..errors import CheckpointError, InputError
from ..io.atomic import save_npz, save_picture
from ..methods.focus.decoder import FocusDecoder
from ..methods.focus.encoder import FocusEncoder
from ..methods.focus.misfit import misfit_prior, prior_theta
from ..methods.focus.method import MISFIT_NETWORK
from ..methods.focus.model import NETWORK, focus_model_from
from ..methods.focus.steps import FocusBatch, FocusNetworks, r_step
from ..runs import load_checkpoint, save_checkpoint
from .common import TrainingData, run_config
from .focus_data import PictureSampler, PictureSet, detect_landmarks
from .focus import IterationOptions
from .options import option
from .registry import register
from .resume import check_resumable, resume_checkpoint

DETECT_SCALE = 4


@dataclass
class FocusMisfitOptions(IterationOptions):
    network: ClassVar[str] = MISFIT_NETWORK
    help: ClassVar[str] = "FOCUS's misfit prior for a trained run (-o RUN with RUN/focus): R_syn, then E_MP"

    steps: int = option("--steps", default=800, type=int, help="R_syn iterations (default 800)")
    pictures: int = option("--pictures", default=4000, type=int, help="synthetic training pictures (default 4000)")
    heldout: int = option("--heldout", default=2000, type=int, help="held-out pictures for E_MP (default 2000)")

    def validate(self) -> None:
        super().validate()
        for name in ("steps", "pictures", "heldout"):
            require_int(getattr(self, name), "--" + name.replace("_", "-"), 1)


def synthetic_pictures(decoder: FocusDecoder, detect: FocusDecoder, model, count: int, seed: int, landmarks: str,
                       progress: bool) -> tuple[PictureSet, torch.Tensor]:
    """``count`` prior pictures at the decoder's size (those MediaPipe misses dropped) and their theta."""
    theta = prior_theta(decoder, model, count, torch.Generator().manual_seed(seed))
    images, points = [], []
    for start in tqdm(range(0, count, 16), desc="synthetic pictures", disable=not progress, file=sys.stderr,
                      leave=False):
        part = theta[start : start + 16]
        with torch.no_grad():
            small = decoder(part)
            large = detect(part) if landmarks == "mediapipe" else None
        images.append((small.image.clamp(0, 1) * 255 + 0.5).to(torch.uint8))
        if large is None:
            points.append(small.landmarks.float())
        else:
            pictures = (large.image.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
            points.append(torch.from_numpy(detect_landmarks(list(pictures), False)) / DETECT_SCALE)
    images, points = torch.cat(images), torch.cat(points)
    keep = torch.isfinite(points).all(2).all(1)
    rows = torch.nonzero(keep)[:, 0]
    return PictureSet(images[rows], points[rows], None, rows, int((~keep).sum())), theta[rows]


def _cached(path, build):
    if path.is_file():
        try:
            with np.load(path) as f:
                return (PictureSet(torch.from_numpy(f["images"]), torch.from_numpy(f["landmarks"]), None,
                                   torch.from_numpy(f["rows"]), int(f["dropped"])), torch.from_numpy(f["theta"]))
        except (OSError, KeyError, ValueError):
            pass
    pictures, theta = build()
    save_npz(path, images=pictures.images.numpy(), landmarks=pictures.landmarks.numpy(), rows=pictures.rows.numpy(),
             dropped=np.int64(pictures.dropped), theta=theta.numpy())
    return pictures, theta


@torch.no_grad()
def measure_misfit(encoder, decoder: FocusDecoder, pictures: PictureSet, theta: torch.Tensor):
    """(E_MP neutral, E_MP expressive), (V, 3) metres, of ``encoder`` on held-out synthetic pictures."""
    encoder.eval()
    predicted = torch.cat([encoder(pictures.images[s : s + 32].float() / 255.0) for s in range(0, len(theta), 32)])
    model = decoder.model

    def meshes(t, neutral):
        p = decoder.split(t)
        identity = p.identity * model.shape_std.to(t)
        return model(identity, None if neutral else p.expression).vertices

    return (misfit_prior(meshes(predicted, True), meshes(theta, True)),
            misfit_prior(meshes(predicted, False), meshes(theta, False)))


def misfit_figure(model, misfit: torch.Tensor) -> np.ndarray:
    """E_MP (V, 3) metres as three colour maps on the mean face, one per axis (FOCUS's Fig. 4): blue -max,
    white 0, red +max mm, with the scale written on each tile."""
    import matplotlib

    from PIL import Image, ImageDraw

    from ..methods.outputs import render_views

    with torch.no_grad():
        neutral = model().vertices[0].cpu().numpy()
    values = misfit.cpu().numpy() * 1000.0
    tiles = []
    for axis, name in enumerate("xyz"):
        top = max(float(np.abs(values[:, axis]).max()), 1e-6)
        colours = matplotlib.colormaps["coolwarm"]((values[:, axis] / top + 1) / 2)[:, :3]
        tile = Image.fromarray(render_views(model, neutral[None], colours)["front"][0])
        ImageDraw.Draw(tile).text((4, 3), f"E_MP {name}: +-{top:.1f} mm", fill=(0, 0, 0))
        tiles.append(np.asarray(tile))
    return np.concatenate(tiles, 1)


@register(FocusMisfitOptions)
def train_focus_misfit(options: FocusMisfitOptions) -> list[dict]:
    """Train R_syn and measure E_MP for the FOCUS run in ``-o``; returns the log rows."""
    device = resolve_device(options.device)
    focus = load_checkpoint(options.run / NETWORK, NETWORK)
    checkpoint = resume_checkpoint(options)
    data = TrainingData.from_options(options)
    trained = focus_model_from(focus.payload, data.face_model)
    config_net, source = trained.config, focus.config.training.get("landmarks", "mediapipe")
    decoder = trained.decoder
    detect = FocusDecoder(data.face_model, decoder.albedo, config_net.image_size * DETECT_SCALE)
    folder = options.folder
    folder.mkdir(parents=True, exist_ok=True)
    train_set, _ = _cached(folder / "pictures_train.npz", lambda: synthetic_pictures(
        decoder, detect, data.face_model, options.pictures, options.seed, source, options.progress))
    held_set, held_theta = _cached(folder / "pictures_heldout.npz", lambda: synthetic_pictures(
        decoder, detect, data.face_model, options.heldout, options.seed + 1, source, options.progress))
    if len(train_set) == 0 or len(held_set) == 0:
        raise InputError("focus-misfit: MediaPipe found no face in the synthetic pictures")
    torch.manual_seed(options.seed)
    encoder = FocusEncoder(decoder.code_dim, config_net.backbone).to(device)
    optimizer = torch.optim.Adadelta(encoder.parameters(), lr=options.lr)
    sampler = PictureSampler(train_set, options.seed)
    step, log = 0, []
    config = run_config(options, data, ("identity",), config_net, {},
                        extra={"focus_run": str(focus.path), "landmarks": source, "pictures": len(train_set),
                               "heldout": len(held_set), "dropped": train_set.dropped + held_set.dropped})
    if checkpoint is not None:
        check_resumable(type(options), checkpoint, config)
        p = checkpoint.payload
        try:
            encoder.load_state_dict(p["model"]["encoder"])
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{checkpoint.path}: weights do not match ({str(exc).splitlines()[0]})") from None
        optimizer.load_state_dict(p["optimizer"])
        sampler.load(p)
        torch.set_rng_state(p["torch_rng"])
        step, log = int(p["step"]), list(p["log"])
    nets = FocusNetworks(encoder, decoder, trained.segmenter)
    losses = trained.config.losses()
    window = []
    for step in tqdm(range(step, options.steps), desc="R_syn", initial=step, total=options.steps,
                     disable=not options.progress, file=sys.stderr, leave=False):
        images, landmarks, _ = sampler.next(options.batch_size, device)
        for group in optimizer.param_groups:
            group["lr"] = options.lr * 0.99 ** int(step // max(1.0, options.steps / 60))
        row = r_step(FocusBatch(images, landmarks), nets, optimizer, losses, "none")
        if not math.isfinite(row["loss"]):
            raise CheckpointError(f"focus-misfit: the loss became {row['loss']} at step {step}; lower --lr")
        window.append(row["loss"])
        done = step + 1
        if done % options.save_every == 0 or done == options.steps:
            log.append({"step": done, "loss": float(np.mean(window))})
            window = []
            state = {"model": {"encoder": encoder.state_dict()}, "optimizer": optimizer.state_dict(),
                     **sampler.state(), "torch_rng": torch.get_rng_state(), "step": done, "log": log}
            if done == options.steps:
                neutral, expressive = measure_misfit(encoder, decoder, held_set, held_theta)
                state.update(misfit_neutral=neutral.cpu(), misfit_expression=expressive.cpu())
                log[-1].update(misfit_neutral_mm=float(neutral.norm(dim=1).mean() * 1000),
                               misfit_expression_mm=float(expressive.norm(dim=1).mean() * 1000))
                save_picture(folder / "misfit.png", misfit_figure(data.face_model, neutral))
            save_checkpoint(folder, config, state)
    return log


__all__ = ["FocusMisfitOptions", "MISFIT_NETWORK", "measure_misfit", "misfit_figure", "synthetic_pictures",
           "train_focus_misfit"]
