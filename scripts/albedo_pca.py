"""Build the low-rank albedo of a face model: a PCA of the data engine's albedo sampler.

Usage (from the repository root)::

    .venv/bin/python scripts/albedo_pca.py [--model default] [--samples 500] [--rank 10] [--seed 4242] [-o PATH]

It draws ``--samples`` albedos with :class:`ofer.data.skin.AlbedoSampler` (the colours the render
engine paints its faces with), takes their mean and the first ``--rank`` principal components
scaled by their standard deviations (so the coefficients have a standard-normal prior), prints
the share of the variance they explain, and writes ``mean`` (V, 3) and ``basis`` (K, V, 3) float32
to ``src/ofer/fitting/data/albedo_<fingerprint[:12]>.npz`` atomically, where the fitter's
photometric refinement (and FOCUS) find it. The result is deterministic in (model, samples, rank, seed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args(argv)

    from ofer.data.skin import AlbedoSampler
    from ofer.facemodels import load_face_model
    from ofer.fitting.albedo import albedo_path
    from ofer.io.atomic import save_npz

    model = load_face_model(args.model)
    sampler = AlbedoSampler(model)
    draws = np.stack([sampler(np.random.default_rng([args.seed, k])) for k in range(args.samples)])  # (N, V, 3)
    flat = draws.reshape(args.samples, -1)
    mean = flat.mean(0)
    _, singular, vt = np.linalg.svd(flat - mean, full_matrices=False)
    std = singular / np.sqrt(args.samples - 1)
    explained = np.cumsum(singular**2) / np.sum(singular**2)
    basis = (vt[: args.rank] * std[: args.rank, None]).reshape(args.rank, -1, 3)
    print(f"{args.samples} albedos of {model.num_vertices} vertices; rank {args.rank} explains "
          f"{100 * explained[args.rank - 1]:.1f} % of the variance (rank 1: {100 * explained[0]:.1f} %, "
          f"rank 5: {100 * explained[min(4, args.rank - 1)]:.1f} %)")
    output = args.output or albedo_path(model.fingerprint())
    save_npz(output, compressed=True, mean=mean.reshape(-1, 3).astype(np.float32), basis=basis.astype(np.float32),
             samples=np.int64(args.samples), seed=np.int64(args.seed))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
