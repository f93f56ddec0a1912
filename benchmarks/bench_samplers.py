"""IdGen sampler quality and speed: DDIM with 10/25/50/100 steps against the 1000-step DDPM reference.

Usage: python benchmarks/bench_samplers.py --checkpoints RUN --data HELDOUT_DIR [--images 40] [--samples 20]

For each held-out image, N shapes are sampled from its ArcFace embedding; errors are RMS distances
(mm) between the neutral front-face vertices of a sample and of the ground truth, after removing
the mean translation. Printed per sampler: best-of-N error, average error, spread (RMS distance
of the samples to their mean), seconds per image, and ratios to the reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ofer.data.shards import ShardDataset
from ofer.facemodels import load_face_model_from_record
from ofer.methods.ofer.generator import CoefficientGenerator
from ofer.runs import load_checkpoint, network_dir


def front_vertices_mm(model, shapes: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        vertices = model(shapes).vertices[:, model.front_mask] * 1000
    return vertices - vertices.mean(1, keepdim=True)


def evaluate(generator, model, arcface, gt_front, sampler, steps, samples, seed):
    rng = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    shapes = generator.sample(arcface, samples, sampler, steps, rng)  # (B, N, S)
    seconds = (time.perf_counter() - started) / len(arcface)
    B, N, S = shapes.shape
    shapes = model.clamp_shape(shapes.reshape(B * N, S))
    front = front_vertices_mm(model, shapes).view(B, N, -1, 3)
    errors = ((front - gt_front[:, None]) ** 2).sum(-1).mean(-1).sqrt()  # (B, N)
    spread = ((front - front.mean(1, keepdim=True)) ** 2).sum(-1).mean(-1).sqrt().mean(1)
    return {"best": float(errors.min(1).values.mean()), "average": float(errors.mean()),
            "spread": float(spread.mean()), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--data", required=True, help="held-out data folder (not used for training)")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = ShardDataset(args.data).arrays(["shape", "arcface"])
    count = min(args.images, len(data["shape"]))
    gen = CoefficientGenerator.from_checkpoint(load_checkpoint(network_dir(args.checkpoints, "idgen"), "idgen"))
    model = load_face_model_from_record(gen.config.face_model)
    arcface = torch.from_numpy(data["arcface"][:count])
    gt_front = front_vertices_mm(model, torch.from_numpy(data["shape"][:count]))
    rows = {("ddpm", 1000): evaluate(gen, model, arcface, gt_front, "ddpm", None, args.samples, args.seed)}
    for steps in (10, 25, 50, 100):
        rows[("ddim", steps)] = evaluate(gen, model, arcface, gt_front, "ddim", steps, args.samples, args.seed)
    prior = model.sample_prior(count * args.samples, torch.Generator().manual_seed(args.seed)).shape
    prior_front = front_vertices_mm(model, prior).view(count, args.samples, -1, 3)
    prior_err = ((prior_front - gt_front[:, None]) ** 2).sum(-1).mean(-1).sqrt()
    ref = rows[("ddpm", 1000)]
    print(f"{count} held-out images x {args.samples} samples; errors: RMS front-vertex distance (mm), translation removed")
    print(f"{'sampler':14s} {'best-of-N':>10s} {'average':>9s} {'spread':>8s} {'s/image':>9s} {'speed-up':>9s} {'avg/ref':>8s}")
    for (name, steps), row in rows.items():
        print(f"{name + ' ' + str(steps):14s} {row['best']:10.3f} {row['average']:9.3f} {row['spread']:8.3f} "
              f"{row['seconds']:9.3f} {ref['seconds'] / row['seconds']:8.1f}x {row['average'] / ref['average']:8.3f}")
    print(f"{'prior samples':14s} {float(prior_err.min(1).values.mean()):10.3f} {float(prior_err.mean()):9.3f}")


if __name__ == "__main__":
    main()
