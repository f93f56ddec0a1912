"""FOCUS's networks as one module, their config, and the variants of BASELINES.md A.11.5.

:class:`FocusModel` holds the reconstruction encoder R, the model-based decoder (no weights of its
own: the face model and its low-rank albedo) and the segmentation U-Net S; its state dict is R's
and S's weights plus the misfit prior E_MP (neutral and expressive, (V, 3) metres, zero until
measured). :class:`FocusConfig` is what a checkpoint records to rebuild it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ...config import Config, require, require_choice, require_int
from ...facemodels import FaceModel
from ...fitting.albedo import albedo_model
from ...networks.resnet import BACKBONES
from ...networks.unet import UNet
from . import losses as L
from .decoder import FocusDecoder
from .encoder import FocusEncoder
from .steps import FocusNetworks

NETWORK = "focus"
# What trains S and R (A.11.5): the method itself, its ablations and its baselines.
#   focus       R init (M_pre) -> S pretrain -> EM (all L_S terms)
#   baseline    as focus, S with a pixel-wise L_nbr (1x1 window), L_area, L_bin
#   neighbor    as focus, S with L_nbr, L_area, L_bin
#   perceptual  as focus, S with L_dist, L_presv, L_area, L_bin
#   mofa        R alone with an unmasked L_pixel (no S), as many R steps as focus has
#   supervised  R alone with the ground-truth visible-face mask (Backbone-Supervised; reads masks)
VARIANTS = ("focus", "baseline", "neighbor", "perceptual", "mofa", "supervised")
SEGMENTING = ("focus", "baseline", "neighbor", "perceptual")
XI_KINDS = ("squared", "norm")


@dataclass
class FocusConfig(Config):
    """The networks and losses of a FOCUS run.

    Attributes:
        image_size: side of the square pictures R and S see (the engine's framing, resized).
        backbone: R's ResNet (:data:`~ofer.networks.resnet.BACKBONES`); unet_width: S's n1.
        albedo_rank: K, the albedo components in theta (at most the face model's shipped rank).
        preset: the losses' forms (``paper`` or ``code``, :data:`~.losses.PRESETS`); variant: :data:`VARIANTS`.
        xi, xi_kind: M_pre's threshold (A.4).
    """

    image_size: int = 64
    backbone: str = "resnet18"
    unet_width: int = 16
    albedo_rank: int = 10
    preset: str = "paper"
    variant: str = "focus"
    xi: float = 0.17
    xi_kind: str = "squared"

    def validate(self) -> None:
        require_int(self.image_size, "--image-size", 16, 1024)
        require_choice(self.backbone, "--backbone", tuple(BACKBONES))
        require_int(self.unet_width, "--unet-width", 1, 256)
        require_int(self.albedo_rank, "--albedo-rank", 0, 10_000)
        require_choice(self.preset, "--preset", tuple(L.PRESETS))
        require_choice(self.variant, "--variant", VARIANTS)
        require(isinstance(self.xi, (int, float)) and not isinstance(self.xi, bool) and self.xi > 0,
                f"--xi must be a positive number, got {self.xi!r}")
        require_choice(self.xi_kind, "--xi-kind", XI_KINDS)

    @property
    def segments(self) -> bool:
        """Whether the variant trains S (else R alone, and S stays at its initial weights)."""
        return self.variant in SEGMENTING

    def losses(self) -> L.FocusLossConfig:
        """The loss weights of the preset with the variant's S terms (A.11.5's ablations)."""
        base = L.PRESETS[self.preset]
        nbr, dist, area, presv, binary = base.eta
        if self.variant == "baseline":
            return replace(base, eta=(nbr, 0.0, area, 0.0, binary), window=1)
        if self.variant == "neighbor":
            return replace(base, eta=(nbr, 0.0, area, 0.0, binary))
        if self.variant == "perceptual":
            return replace(base, eta=(0.0, dist, area, presv, binary))
        return base


class FocusModel(nn.Module):
    """R, the decoder and S of one face model; ``misfit_neutral`` / ``misfit_expression``: E_MP (V, 3)."""

    def __init__(self, face_model: FaceModel, config: FocusConfig):
        super().__init__()
        albedo = albedo_model(face_model)
        if config.albedo_rank > albedo.rank:
            raise ValueError(f"--albedo-rank {config.albedo_rank}: the face model's albedo has {albedo.rank} components")
        self.config = config
        self.decoder = FocusDecoder(face_model, albedo.truncated(config.albedo_rank), config.image_size)
        self.encoder = FocusEncoder(self.decoder.code_dim, config.backbone)
        self.segmenter = UNet(6, config.unet_width)
        zeros = torch.zeros(face_model.num_vertices, 3)
        self.register_buffer("misfit_neutral", zeros.clone())
        self.register_buffer("misfit_expression", zeros.clone())

    def networks(self) -> FocusNetworks:
        return FocusNetworks(self.encoder, self.decoder, self.segmenter)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: R, S and E_MP (the decoder is rebuilt from the face model)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("decoder.")}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        wanted = [k for k in missing if not k.startswith("decoder.")]
        if wanted or unexpected:
            raise RuntimeError(f"missing {wanted[:3]}, unexpected {list(unexpected)[:3]}")


def focus_model_from(payload: dict, face_model: FaceModel) -> FocusModel:
    """A FocusModel rebuilt from a checkpoint payload (``last.pt`` or ``pretrained.pt``): its config's
    ``net`` and its ``model`` weights (RuntimeError or KeyError when they do not fit)."""
    model = FocusModel(face_model, FocusConfig.from_dict(payload["config"]["net"]))
    model.load_trainable_state(payload["model"])
    return model


__all__ = ["FocusConfig", "FocusModel", "NETWORK", "SEGMENTING", "VARIANTS", "XI_KINDS", "focus_model_from"]
