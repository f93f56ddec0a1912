"""Random backgrounds for synthetic faces: plain, gradients, textures, blurred 'rooms'."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .occluders import random_texture


def _blocks(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Out-of-focus 'indoor' scene: a wall colour with a few large blurred rectangles."""
    wall = tuple(int(c) for c in rng.integers(40, 230, 3))
    canvas = Image.new("RGB", (width, height), wall)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * [width, height]
        x1, y1 = x0 + rng.uniform(0.1, 0.8) * width, y0 + rng.uniform(0.1, 0.9) * height
        draw.rectangle([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return np.asarray(canvas.filter(ImageFilter.GaussianBlur(rng.uniform(2, 8))))


def sample_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 background: plain colour, gradient, texture or blurred blocks, with mild noise."""
    kind = rng.integers(4)
    if kind == 0:
        image = np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (height, width, 3)).copy()
    elif kind == 1:
        image = random_texture(height, width, rng)
    elif kind == 2:
        texture = Image.fromarray(random_texture(height, width, rng))
        image = np.asarray(texture.filter(ImageFilter.GaussianBlur(rng.uniform(0, 4))))
    else:
        image = _blocks(height, width, rng)
    noise = rng.normal(0, rng.uniform(0, 6), (height, width, 1))
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
