"""Per-vertex colours for synthetic faces: skin tones, lips, brows, eyes, teeth, mouth interior.

Regions are found from the face model's own landmarks (no hand-picked vertex lists): lips are the
front vertices inside the outer-lip landmark polygon seen from the front, brows a band around the
brow landmarks, the mouth interior the vertices behind the lips, eyeballs and teeth come from the
model's ``part`` labels when it has them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path as PolygonPath

# Skin tones in sRGB [0,1], light to dark (roughly Fitzpatrick I..VI, as seen in photos).
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


@dataclass
class FaceRegions:
    """Boolean (V,) vertex masks of a head."""

    lips: np.ndarray
    brows: np.ndarray
    mouth_interior: np.ndarray
    left_eye: np.ndarray
    right_eye: np.ndarray
    teeth: np.ndarray


def face_regions(template: np.ndarray, landmarks68: np.ndarray, part: np.ndarray | None = None) -> FaceRegions:
    """Find colour regions on a neutral template.

    Args:
        template: (V, 3) neutral vertices (metres, +z out of the face).
        landmarks68: (68, 3) landmarks of the same mesh.
        part: optional (V,) labels (0 skin, 1/2 eyeballs, 3 teeth).
    """
    part = np.zeros(len(template), dtype=int) if part is None else np.asarray(part)
    skin = part == 0
    outer_lips = PolygonPath(landmarks68[48:60, :2])
    inside_lips = outer_lips.contains_points(template[:, :2])
    lip_depth = landmarks68[48:68, 2].min()
    lips = skin & inside_lips & (template[:, 2] > lip_depth - 0.004)
    interior = skin & inside_lips & ~lips
    brow_pts = landmarks68[17:27]
    brow_dist = np.min(np.linalg.norm(template[:, None, :2] - brow_pts[None, :, :2], axis=-1), axis=1)
    front = template[:, 2] > landmarks68[17:27, 2].min() - 0.01
    brows = skin & front & (brow_dist < 0.0045)
    return FaceRegions(lips, brows, interior, part == 1, part == 2, part == 3)


def _smooth_noise(template: np.ndarray, rng: np.random.Generator, scale_m: float, n_waves: int = 12) -> np.ndarray:
    """Low-frequency noise over the surface: a sum of random plane waves, (V,) in about [-1, 1]."""
    directions = rng.normal(size=(n_waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    phases = rng.uniform(0, 2 * np.pi, n_waves)
    waves = np.sin(template @ directions.T * (2 * np.pi / scale_m) + phases)
    return waves.mean(1) * np.sqrt(2.0 / 1.0)


def sample_albedo(template: np.ndarray, regions: FaceRegions, rng: np.random.Generator) -> np.ndarray:
    """Random per-vertex albedo (V, 3) in sRGB [0, 1]: skin tone, blotches, lips, brows, eyes, teeth."""
    tone_pos = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(np.floor(tone_pos))
    tone = SKIN_TONES[low] * (1 - (tone_pos - low)) + SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)] * (tone_pos - low)
    tone = tone * rng.uniform(0.93, 1.07, 3)  # individual hue
    albedo = np.tile(tone, (len(template), 1))
    blotch = _smooth_noise(template, rng, scale_m=0.05)[:, None] * np.array([0.04, 0.025, 0.02])
    redness = np.clip(_smooth_noise(template, rng, scale_m=0.08), 0, None)[:, None] * np.array([0.05, -0.01, -0.01])
    albedo = albedo * (1 + blotch + redness)
    albedo += rng.normal(0, 0.012, albedo.shape)  # fine pores
    lip_colour = tone * np.array([1.0, 0.72, 0.72]) * rng.uniform(0.8, 0.95)
    albedo[regions.lips] = lip_colour
    brow_colour = np.array([0.16, 0.11, 0.08]) * rng.uniform(0.5, 1.6)
    albedo[regions.brows] = albedo[regions.brows] * 0.35 + brow_colour * 0.65
    albedo[regions.mouth_interior] = np.array([0.25, 0.08, 0.08]) * rng.uniform(0.4, 1.0)
    albedo[regions.teeth] = np.array([0.85, 0.82, 0.72]) * rng.uniform(0.8, 1.0)
    iris = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]
    for eye in (regions.left_eye, regions.right_eye):
        if eye.any():
            albedo[eye] = eyeball_colours(template[eye], iris)
    return np.clip(albedo, 0.0, 1.0)


def eyeball_colours(points: np.ndarray, iris: np.ndarray) -> np.ndarray:
    """Sclera, iris and pupil on an eyeball's vertices (N, 3), looking along +z."""
    centre = points.mean(0)
    offsets = points - centre
    radius = np.linalg.norm(offsets, axis=1).max() + 1e-9
    cos_front = offsets[:, 2] / radius
    colour = np.tile([0.88, 0.86, 0.84], (len(points), 1))
    colour[cos_front > 0.80] = iris
    colour[cos_front > 0.93] = [0.03, 0.03, 0.03]
    return colour
