"""``ofer render``: a grid picture of random shaded heads of a face model."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import OferError
from ..io.atomic import save_picture
from .outputs import output_file

# Framing of the grid tiles: this many metres fill a tile's height (the whole head, neck included).
TILE_FIELD_M = 0.27
BACKGROUND_RGB = (0.30, 0.30, 0.35)


def register(subparsers) -> None:
    parser = subparsers.add_parser("render", help="render random heads of a face model as one grid picture")
    parser.add_argument("--model", default="default", help="face model: default, flame:PATH or npz:PATH")
    parser.add_argument("--seed", type=int, default=0, help="random seed (identities, expressions, poses, lights)")
    parser.add_argument("--count", type=int, default=8, help="number of heads")
    parser.add_argument("--size", type=int, default=224, help="pixels per (square) tile")
    parser.add_argument(
        "--backend", choices=("auto", "gl", "torch"), default="auto", help="rasteriser (auto: gl if EGL works)"
    )
    parser.add_argument("-o", "--output", required=True, help="output picture (.png or .jpg)")
    parser.set_defaults(func=run)


def random_views(count: int, size: int, generator: torch.Generator):
    """Cameras (a few yaw/pitch/roll head poses) and varied SH lights for ``count`` heads."""
    from ..render.cameras import look_at_face
    from ..render.shading import sh_from_lights

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(count, *shape, generator=generator)

    cameras = look_at_face(
        distance=1.0,
        yaw=uniform(-35, 35),
        pitch=uniform(-12, 12),
        roll=uniform(-5, 5),
        focal=size / TILE_FIELD_M,
        image_size=size,
    )
    direction = torch.stack([uniform(-0.6, 0.6), uniform(0.1, 0.6), torch.ones(count)], -1)
    sh = sh_from_lights(ambient=uniform(0.35, 0.5), direction=direction, intensity=uniform(0.45, 0.75))
    return cameras, sh


def render_heads(model_spec: str, seed: int, count: int, size: int, backend: str = "auto") -> torch.Tensor:
    """Render ``count`` random heads (identity, expression, pose, light, skin tone).

    Returns:
        (K, size, size, 3) colours in [0, 1].
    """
    from ..facemodels import load_face_model
    from ..render.renderer import MeshRenderer, make_rasterizer, paint_face_model
    from ..render.shading import SHShader

    if count < 1 or size < 16:
        raise OferError("render: --count must be at least 1 and --size at least 16")
    renderer = MeshRenderer(make_rasterizer(backend), SHShader(background=BACKGROUND_RGB))
    model = load_face_model(model_spec)
    generator = torch.Generator().manual_seed(seed)
    sample = model.sample_prior(count, generator, expression=True)
    cameras, sh = random_views(count, size, generator)
    with torch.no_grad():
        neutral = model().vertices[0]
        centre = 0.5 * (neutral.amin(0) + neutral.amax(0))
        vertices = model(sample.shape, sample.expression, sample.pose).vertices - centre
        albedo = paint_face_model(model)
        part = getattr(model, "part", torch.zeros(len(albedo), dtype=torch.long))
        tone = 0.55 + 0.5 * torch.rand(count, 1, 1, generator=generator)  # darker to lighter skin
        albedo = albedo * torch.where((part == 0)[None, :, None], tone, torch.ones_like(tone))
        image = renderer(vertices, model.faces, cameras, albedo, sh).image
    return image.clamp(0, 1)


def tile(images: torch.Tensor, columns: int) -> np.ndarray:
    """Images (K, H, W, 3) in [0, 1] -> one grid picture (rows * H, columns * W, 3) uint8."""
    count, height, width, _ = images.shape
    rows = math.ceil(count / columns)
    grid = torch.zeros(rows * columns, height, width, 3, dtype=images.dtype)
    grid[:count] = images
    grid = grid.reshape(rows, columns, height, width, 3).permute(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * height, columns * width, 3)
    return (grid * 255).round().byte().numpy()


def run(args: argparse.Namespace) -> int:
    path = output_file(args.output)
    images = render_heads(args.model, args.seed, args.count, args.size, args.backend)
    try:
        save_picture(path, tile(images, columns=min(args.count, 4)))
    except (OSError, ValueError) as exc:
        raise OferError(f"render: cannot write {path}: {exc}") from None
    print(f"wrote {path} ({args.count} heads, {args.size} px tiles)")
    return 0
