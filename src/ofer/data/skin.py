"""Random per-vertex colours for synthetic faces.

Builds on :func:`ofer.render.renderer.paint_face_model` (painted eyes, teeth, lips, mouth interior)
and adds what varies between people: skin tone (light to dark), iris colour, low-frequency
blotches and redness, fine noise, and darker eyebrows (a band around the brow landmarks).
"""

from __future__ import annotations

import numpy as np
import torch

from ..facemodels import FaceModel
from ..render.renderer import paint_face_model

# Skin tones in [0,1] RGB, light to dark (roughly Fitzpatrick I..VI as seen in photos).
SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.90, 0.72, 0.60],
        [0.80, 0.60, 0.47],
        [0.68, 0.48, 0.35],
        [0.52, 0.35, 0.24],
        [0.36, 0.24, 0.17],
        [0.25, 0.17, 0.12],
    ]
)
IRIS_COLOURS = np.array([[0.30, 0.18, 0.08], [0.18, 0.10, 0.05], [0.25, 0.40, 0.55], [0.30, 0.38, 0.22], [0.45, 0.33, 0.18]])
BROW_BAND_M = 0.0045


def brow_mask(template: np.ndarray, landmarks68: np.ndarray, part: np.ndarray) -> np.ndarray:
    """(V,) bool: skin vertices on the front of the face within ``BROW_BAND_M`` of the brow landmarks 17-26."""
    brows = landmarks68[17:27]
    dist = np.linalg.norm(template[:, None, :2] - brows[None, :, :2], axis=-1).min(1)
    front = template[:, 2] > brows[:, 2].min() - 0.01
    return (part == 0) & front & (dist < BROW_BAND_M)


def smooth_noise(points: np.ndarray, rng: np.random.Generator, wavelength_m: float, waves: int = 12) -> np.ndarray:
    """Low-frequency noise over the surface (a sum of random plane waves), (V,) of unit variance."""
    directions = rng.normal(size=(waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    phases = rng.uniform(0, 2 * np.pi, waves)
    return np.sin(points @ directions.T * (2 * np.pi / wavelength_m) + phases).sum(1) * np.sqrt(2.0 / waves)


def sample_skin_tone(rng: np.random.Generator) -> np.ndarray:
    """A random tone between the entries of ``SKIN_TONES``, with an individual hue: (3,)."""
    position = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(np.floor(position))
    high = min(low + 1, len(SKIN_TONES) - 1)
    tone = SKIN_TONES[low] + (SKIN_TONES[high] - SKIN_TONES[low]) * (position - low)
    return tone * rng.uniform(0.94, 1.06, 3)


class AlbedoSampler:
    """Random albedo for one face model (regions computed once from its neutral template)."""

    def __init__(self, model: FaceModel):
        self.model = model
        with torch.no_grad():
            neutral = model()
        self.template = neutral.vertices[0].double().numpy()
        self.part = getattr(model, "part", torch.zeros(model.num_vertices, dtype=torch.long)).numpy()
        landmarks = neutral.landmarks68
        self.brows = (
            brow_mask(self.template, landmarks[0].double().numpy(), self.part)
            if landmarks is not None
            else np.zeros(len(self.template), bool)
        )

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        """(V, 3) albedo in [0, 1]."""
        tone = sample_skin_tone(rng)
        iris = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] * rng.uniform(0.8, 1.2)
        albedo = paint_face_model(self.model, skin=tuple(tone), iris=tuple(iris)).double().numpy()
        skin = self.part == 0
        blotch = smooth_noise(self.template, rng, wavelength_m=0.05)[:, None] * np.array([0.035, 0.025, 0.02])
        redness = np.clip(smooth_noise(self.template, rng, wavelength_m=0.08), 0, None)[:, None] * np.array([0.04, -0.01, -0.01])
        pores = rng.normal(0, 0.012, albedo.shape)
        albedo[skin] = albedo[skin] * (1 + blotch[skin] + redness[skin]) + pores[skin]
        brow_colour = np.array([0.16, 0.11, 0.08]) * rng.uniform(0.5, 1.6)
        albedo[self.brows] = albedo[self.brows] * 0.45 + brow_colour * 0.55
        return np.clip(albedo, 0.0, 1.0)
