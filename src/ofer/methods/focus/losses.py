"""FOCUS's losses (BASELINES.md A.3) and its preliminary masks (A.4), as pure functions.

Shapes: images (B, 3, H, W) RGB in [0, 1]; ``region`` R, the rendered face region, and ``mask`` M, the
segmentation network's output, (B, 1, H, W) in [0, 1]; shallow ArcFace features (B, C, h, w);
embeddings (B, 512) unit vectors; landmarks (B, 68, 2) in 224-px units.

Two presets (:data:`PRESETS`): ``paper`` (the default: what the paper writes, per-pixel means) and
``code`` (the authors' implementation: a 5x5 neighbourhood on masked images with unsquared distances,
unsquared pixel error, L_presv weighted 0.25, L_bin as an L1 form).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# 0-based iBUG-68 indices weighted 20 in L_lm: the nose ridge's lower half and the inner lip
HEAVY_LANDMARKS = (28, 29, 30) + tuple(range(60, 68))
HEAVY_WEIGHT = 20.0
EPS = 1e-8


@dataclass(frozen=True)
class FocusLossConfig:
    """The weights and forms of the losses. eta: L_S's (nbr, dist, area, presv, bin); lam: L_R's
    (pixel, per, lm, reg)."""

    eta: tuple[float, float, float, float, float] = (15.0, 3.0, 0.5, 2.5, 10.0)
    lam: tuple[float, float, float, float] = (0.5, 0.25, 5e-4, 0.1)
    window: int = 3
    squared: bool = True  # squared RGB distances in L_nbr and L_pixel ([P]); unsquared in [C]
    masked_neighbours: bool = False  # [C]: L_nbr compares M * I_R with M * I_T
    binary_form: str = "square"  # "square": -(1/S_R) sum R (M - 0.5)^2; "l1": 0.5 - mean |R M - 0.5| ([C])


PRESETS = {
    "paper": FocusLossConfig(),
    "code": FocusLossConfig(eta=(15.0, 3.0, 0.5, 0.25, 10.0), window=5, squared=False, masked_neighbours=True,
                            binary_form="l1"),
}


def _distance(a: torch.Tensor, b: torch.Tensor, squared: bool) -> torch.Tensor:
    """(B, 1, H, W) RGB distance of two (B, 3, H, W) images."""
    d2 = ((a - b) ** 2).sum(1, keepdim=True)
    return d2 if squared else (d2 + EPS).sqrt()


def neighbour_loss(target, render, region, mask, window: int = 3, squared: bool = True,
                   masked: bool = False) -> torch.Tensor:
    """L_nbr: mean over pixels of R M min_{x' in N(x)} ||I_T(x) - I_R(x')|| (squared or not).

    N(x) is the ``window`` x ``window`` neighbourhood (inside the image), so a rendering off by one pixel
    costs nothing with the 3x3 window. ``masked`` ([C]): both images multiplied by M first and every
    pixel counted (a masked-out pixel then costs nothing).
    """
    weight = region * mask
    if masked:
        target, render, weight = target * mask, render * mask, torch.ones_like(weight)
    h, w = target.shape[-2:]
    r = window // 2
    padded = F.pad(render, (r, r, r, r))
    inside = F.pad(torch.ones_like(render[:, :1]), (r, r, r, r))
    best = None
    for dy in range(window):
        for dx in range(window):
            shifted = padded[..., dy:dy + h, dx:dx + w]
            d = _distance(target, shifted, squared)
            d = torch.where(inside[..., dy:dy + h, dx:dx + w] > 0, d, torch.full_like(d, float("inf")))
            best = d if best is None else torch.minimum(best, d)
    return (weight * best).mean()


def area_loss(region, mask) -> torch.Tensor:
    """L_area = -S_M / S_R per image (0 for an empty region), averaged over the batch."""
    s_r = region.flatten(1).sum(1)
    s_m = (region * mask).flatten(1).sum(1)
    return -(s_m / s_r.clamp_min(EPS)).mean()


def binary_loss(region, mask, form: str = "square") -> torch.Tensor:
    """L_bin: lowest for a 0/1 mask, 0 for M = 0.5 everywhere. ``square``: -(1/S_R) sum R (M - 0.5)^2;
    ``l1`` ([C]): 0.5 - mean over pixels of |R M - 0.5|."""
    if form == "l1":
        return 0.5 - (region * mask - 0.5).abs().mean()
    if form != "square":
        raise ValueError(f"binary_loss: form must be 'square' or 'l1', got {form!r}")
    s_r = region.flatten(1).sum(1).clamp_min(EPS)
    return -((region * (mask - 0.5) ** 2).flatten(1).sum(1) / s_r).mean()


def feature_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cosine over channels at each location of (B, C, h, w) features, averaged (in [0, 2]):
    L_dist (F(I_T M) vs F(I_R M)) and L_presv (F(I_T M) vs F(I_T)) on the shallow features."""
    return (1.0 - F.cosine_similarity(a, b, dim=1, eps=EPS)).mean()


def perceptual_loss(target_embedding, render_embedding) -> torch.Tensor:
    """L_per: 1 - cosine of the 512-d embeddings of the unmasked I_T and I_R, batch mean."""
    return (1.0 - F.cosine_similarity(target_embedding, render_embedding, dim=1, eps=EPS)).mean()


def pixel_loss(target, render, region, mask, squared: bool = True) -> torch.Tensor:
    """L_pixel: sum R M ||I_T - I_R|| (squared or not) / sum R M, pooled over the batch."""
    weight = region * mask
    return (weight * _distance(target, render, squared)).sum() / weight.sum().clamp_min(EPS)


def landmark_weights(count: int = 68, device=None) -> torch.Tensor:
    """(count,) L_lm's weights: :data:`HEAVY_WEIGHT` at :data:`HEAVY_LANDMARKS`, 1 elsewhere."""
    w = torch.ones(count, device=device)
    w[list(HEAVY_LANDMARKS)] = HEAVY_WEIGHT
    return w


def landmark_loss(target, predicted) -> torch.Tensor:
    """L_lm: mean over batch x 68 x 2 of (w (lm_T - lm_R))^2, the weight inside the square (224-px units)."""
    w = landmark_weights(target.shape[1], target.device)[None, :, None]
    return ((w * (target - predicted)) ** 2).mean()


def regularisation_loss(identity, expression, albedo) -> torch.Tensor:
    """L_reg: mean of squares of the identity, expression and albedo coefficients (std units; no pose, no SH)."""
    coefficients = torch.cat([identity, expression, albedo], dim=1)
    return (coefficients ** 2).mean()


@torch.no_grad()
def preliminary_mask(target, render, region, xi: float = 0.17, kind: str = "squared") -> torch.Tensor:
    """M_pre = R [error < xi] (A.4), no gradient: ``squared``, sum_RGB (I_T - I_R)^2 < xi (the paper,
    literally); ``norm``, ||I_T - I_R|| < xi."""
    if kind not in ("squared", "norm"):
        raise ValueError(f"preliminary_mask: kind must be 'squared' or 'norm', got {kind!r}")
    error = _distance(target, render, squared=(kind == "squared"))
    return region * (error < xi).to(region.dtype)


def segmentation_loss(terms: dict[str, torch.Tensor], config: FocusLossConfig) -> torch.Tensor:
    """L_S = eta . (nbr, dist, area, presv, bin)."""
    names = ("nbr", "dist", "area", "presv", "bin")
    return sum(eta * terms[name] for eta, name in zip(config.eta, names))


def reconstruction_loss(terms: dict[str, torch.Tensor], config: FocusLossConfig) -> torch.Tensor:
    """L_R = lam . (pixel, per, lm, reg)."""
    names = ("pixel", "per", "lm", "reg")
    return sum(lam * terms[name] for lam, name in zip(config.lam, names))
