"""One training step of each FOCUS stage (BASELINES.md A.3-A.5), on a batch of target pictures.

- :func:`r_step`: R learns from L_R with the mask fixed: M_pre (the R-init stage), S's prediction on
  [I_R, I_T] (EM; detached, the M-step semantics, unless ``detach_mask=False``, the code's variant),
  no mask (``"none"``: MoFA-style, and R_syn of the misfit prior: an unmasked L_pixel) or the ground
  truth (``"given"``: Backbone-Supervised).
- :func:`s_pretrain_step`: S learns M_pre from the frozen R's renderings (BCE on probabilities).
- :func:`s_step`: S learns from L_S with R frozen (I_R detached).

The frozen network is in eval mode and has no gradient during the other's step, so its parameters and
batch-norm buffers stay bit-identical. S's input is [I_R, I_T], RGB, everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import losses as L
from .decoder import FocusDecoder, FocusRendering
from .perceptual import perceptual_features

LANDMARK_UNITS = 224.0  # L_lm in 224-px units at any resolution, so that lambda_3 keeps its meaning


@dataclass
class FocusBatch:
    """images: (B, 3, H, W) RGB in [0, 1]; landmarks: (B, 68, 2) target landmarks in pixels; visible:
    (B, 1, H, W) the ground-truth visible-face mask, read only by the supervised variant (``"given"``)."""

    images: torch.Tensor
    landmarks: torch.Tensor
    visible: Optional[torch.Tensor] = None


@dataclass
class FocusNetworks:
    encoder: nn.Module  # R: pictures -> theta
    decoder: FocusDecoder
    segmenter: nn.Module  # S: [I_R, I_T] -> M

    def render(self, images: torch.Tensor) -> tuple[torch.Tensor, FocusRendering]:
        theta = self.encoder(images)
        return theta, self.decoder(theta)

    def mask(self, rendering: FocusRendering, images: torch.Tensor) -> torch.Tensor:
        return self.segmenter(torch.cat([rendering.image, images], dim=1))


def _frozen(module: nn.Module):
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)


def _training(module: nn.Module):
    module.train()
    for p in module.parameters():
        p.requires_grad_(True)


def reconstruction_terms(batch: FocusBatch, theta: torch.Tensor, rendering: FocusRendering,
                         mask: Optional[torch.Tensor], decoder: FocusDecoder, config: L.FocusLossConfig):
    """L_R's terms. ``mask`` None: L_pixel over the whole rendered region."""
    images, region = batch.images, rendering.region
    weight = torch.ones_like(region) if mask is None else mask
    target = perceptual_features(images, batch.landmarks).embedding
    rendered = perceptual_features(rendering.image, rendering.landmarks).embedding
    params = decoder.split(theta)
    units = LANDMARK_UNITS / images.shape[-1]
    return {"pixel": L.pixel_loss(images, rendering.image, region, weight, config.squared),
            "per": L.perceptual_loss(target, rendered),
            "lm": L.landmark_loss(batch.landmarks * units, rendering.landmarks * units),
            "reg": L.regularisation_loss(params.identity, params.expression, params.albedo)}


def r_step(batch: FocusBatch, nets: FocusNetworks, optimiser, config: L.FocusLossConfig, mask_source: str = "em",
           xi: float = 0.17, xi_kind: str = "squared", detach_mask: bool = True) -> dict[str, float]:
    """One step of R. ``mask_source``: ``"pre"`` (M_pre), ``"em"`` (S's mask), ``"none"`` (unmasked) or
    ``"given"`` (the batch's ground-truth visible-face mask: Backbone-Supervised)."""
    _training(nets.encoder)
    _frozen(nets.segmenter)
    theta, rendering = nets.render(batch.images)
    if mask_source == "pre":
        mask = L.preliminary_mask(batch.images, rendering.image, rendering.region, xi, xi_kind)
    elif mask_source == "em":
        mask = nets.mask(rendering, batch.images) * rendering.region
        mask = mask.detach() if detach_mask else mask
    elif mask_source == "none":
        mask = None
    elif mask_source == "given" and batch.visible is not None:
        mask = batch.visible * rendering.region
    else:
        raise ValueError(f"r_step: mask_source must be 'pre', 'em', 'none' or 'given' (with a visible mask), "
                         f"got {mask_source!r}")
    terms = reconstruction_terms(batch, theta, rendering, mask, nets.decoder, config)
    loss = L.reconstruction_loss(terms, config)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}


def _frozen_rendering(batch: FocusBatch, nets: FocusNetworks) -> FocusRendering:
    _frozen(nets.encoder)
    with torch.no_grad():
        return nets.render(batch.images)[1]


def s_pretrain_step(batch: FocusBatch, nets: FocusNetworks, optimiser, xi: float = 0.17,
                    xi_kind: str = "squared") -> dict[str, float]:
    """One step of S towards M_pre of the frozen R (BCE on probabilities, inside and outside R)."""
    rendering = _frozen_rendering(batch, nets)
    target = L.preliminary_mask(batch.images, rendering.image, rendering.region, xi, xi_kind)
    _training(nets.segmenter)
    loss = F.binary_cross_entropy(nets.mask(rendering, batch.images).clamp(1e-6, 1 - 1e-6), target)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return {"loss": float(loss.detach())}


def segmentation_terms(batch: FocusBatch, rendering: FocusRendering, mask: torch.Tensor,
                       config: L.FocusLossConfig) -> dict[str, torch.Tensor]:
    """L_S's terms for S's ``mask`` (B, 1, H, W); the applied mask is R * M."""
    images, region = batch.images, rendering.region
    applied = region * mask
    target_masked = perceptual_features(images * applied, batch.landmarks).shallow
    render_masked = perceptual_features(rendering.image * applied, rendering.landmarks).shallow
    with torch.no_grad():
        target_clean = perceptual_features(images, batch.landmarks).shallow
    return {"nbr": L.neighbour_loss(images, rendering.image, region, mask, config.window, config.squared,
                                    config.masked_neighbours),
            "dist": L.feature_distance(target_masked, render_masked),
            "area": L.area_loss(region, mask),
            "presv": L.feature_distance(target_masked, target_clean),
            "bin": L.binary_loss(region, mask, config.binary_form)}


def s_step(batch: FocusBatch, nets: FocusNetworks, optimiser, config: L.FocusLossConfig) -> dict[str, float]:
    """One EM step of S with R frozen."""
    rendering = _frozen_rendering(batch, nets)
    _training(nets.segmenter)
    terms = segmentation_terms(batch, rendering, nets.mask(rendering, batch.images), config)
    loss = L.segmentation_loss(terms, config)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
