"""Draw docs/default_head.png: random heads of a face model, neutral (top) and with a random expression (bottom).

Usage: python scripts/figure_default_head.py [--model default] [--seed 0] [--count 8] [-o docs/default_head.png]
"""

import argparse

import numpy as np
import torch
from PIL import Image

import ofer
from ofer.facemodels.autolandmarks import frontal_view, shade_frontal
from ofer.render.raster_numpy import rasterize


def render(vertices: np.ndarray, faces: np.ndarray, part: np.ndarray, size: int) -> np.ndarray:
    screen, _ = frontal_view(vertices, size)
    return shade_frontal(vertices, faces, part, rasterize(screen, faces, size, size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("-o", "--output", default="docs/default_head.png")
    args = parser.parse_args()
    model = ofer.load_face_model(args.model)
    sample = model.sample_prior(args.count, torch.Generator().manual_seed(args.seed), expression=True)
    faces = model.faces.numpy()
    part = getattr(model, "part", torch.zeros(model.num_vertices, dtype=torch.long)).numpy()
    with torch.no_grad():
        rows = [model(sample.shape).vertices, model(sample.shape, sample.expression).vertices]
    grid = [np.concatenate([render(v.double().numpy(), faces, part, args.size) for v in row], 1) for row in rows]
    Image.fromarray(np.concatenate(grid, 0)).quantize(256).save(args.output, optimize=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
