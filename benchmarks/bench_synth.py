"""Synthetic data engine throughput: rendering, occlusion, degradation, encoders, and whole shards.

Usage: python benchmarks/bench_synth.py [--n 64] [--model default] [--appearance NAME]
Prints samples per second per stage (one process) and the projected time for 10,000 samples.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ofer.data.backgrounds import sample_background
from ofer.data.occluders import occlude_face
from ofer.data.recipe import SynthConfig
from ofer.data.sample import SampleMaker, degrade
from ofer.data.synth import synth_encoders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--model", default="default")
    parser.add_argument("--appearance", default=None, help="appearance encoder (default: the front end's)")
    args = parser.parse_args()
    maker = SampleMaker(args.model, SynthConfig(), encoders=synth_encoders(args.appearance))
    maker.make_shard(0, 4, 0)  # warm up every model
    n, cfg = args.n, maker.config
    timings = {}
    rngs = [np.random.default_rng([9, i]) for i in range(n)]
    gens = [torch.Generator().manual_seed(i) for i in range(n)]

    t = time.perf_counter()
    renders = [maker.render(maker.coefficients(r, g, i, 9), r, r) for i, (r, g) in enumerate(zip(rngs, gens))]
    timings["coefficients + albedo + render"] = time.perf_counter() - t
    t = time.perf_counter()
    pictures = []
    for (out, lmk, *_), r in zip(renders, rngs):
        alpha = out.alpha[0, ..., None].numpy()
        bg = sample_background(cfg.image_size, cfg.image_size, r).astype(np.float32) / 255
        pic = ((out.image[0].clamp(0, 1).numpy() * alpha + bg * (1 - alpha)) * 255).astype(np.uint8)
        face = (out.triangle_id[0] >= 0).numpy()
        pictures.append((occlude_face(pic, lmk, face, "hand", r).image, lmk))
    timings["background + occluder"] = time.perf_counter() - t
    t = time.perf_counter()
    images = [degrade(p, r, cfg) for (p, _), r in zip(pictures, rngs)]
    timings["blur + noise + JPEG"] = time.perf_counter() - t
    t = time.perf_counter()
    located = maker.locate(images, [lmk for _, lmk in pictures])
    timings["detector (SCRFD)"] = time.perf_counter() - t
    identity, appearance = maker.frontend.identity, maker.frontend.appearance
    arc = np.stack([identity.crop(im, det) for im, (det, _) in zip(images, located)])
    app = np.stack([appearance.crop(im, det) for im, (det, _) in zip(images, located)])
    t = time.perf_counter()
    identity.embed(arc)
    timings[f"identity ({identity.name})"] = time.perf_counter() - t
    t = time.perf_counter()
    appearance.embed(app)
    timings[f"appearance ({appearance.name})"] = time.perf_counter() - t
    t = time.perf_counter()
    maker.make_shard(100, n, 9)
    whole = time.perf_counter() - t
    print(f"{n} samples, image {cfg.image_size}px, torch threads {torch.get_num_threads()}")
    for stage, seconds in timings.items():
        print(f"  {stage:46s} {n / seconds:8.1f} samples/s  ({1000 * seconds / n:6.1f} ms/sample)")
    label = "whole shard (occluded + clean embeddings)"
    print(f"  {label:46s} {n / whole:8.1f} samples/s  ({1000 * whole / n:6.1f} ms/sample)")
    print(f"projected 10,000 samples, one process: {10000 * whole / n / 60:.1f} min")


if __name__ == "__main__":
    main()
