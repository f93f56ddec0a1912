"""How well ExpGen's hypotheses match the true expression, and whether any coefficient is left undenoised.

Usage: python benchmarks/bench_expgen.py --checkpoints RUN --data HELDOUT [--images 128] [--samples 10]

The true identity is used for every mesh, so only the expression differs. Printed, in mm on the
unoccluded front vertices (RMS vertex distance, no alignment):
- average hypothesis (SE), best of M (CSE), and the mean of the M coefficient vectors;
- references: the neutral face, a random expression from the prior, and ridge regression from
  the condition to the coefficients fitted on the run's training data (if that folder exists);
- the largest per-dimension spread of the samples in standardised units, for ExpGen and IdGen
  (about 1 for a healthy model; a dimension the network never learned to denoise shows ~10).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ofer.data.shards import EMBEDDING_FIELDS, ShardDataset
from ofer.data.synth import unpack_bits
from ofer.facemodels import load_face_model_from_record
from ofer.methods.ofer.generator import CoefficientGenerator
from ofer.runs import load_checkpoint, network_dir


def visible_rms(model, shape: torch.Tensor, expression: torch.Tensor, truth: torch.Tensor, visible: np.ndarray,
                pose: torch.Tensor | None = None) -> np.ndarray:
    """(B,) RMS distance (mm) of the meshes (shape, expression, pose) to ``truth`` (B, V, 3 mm) on visible vertices."""
    with torch.no_grad():
        d2 = ((model(shape, expression, pose).vertices * 1000 - truth) ** 2).sum(-1).numpy()
    return np.array([np.sqrt(d2[i][visible[i]].mean()) for i in range(len(d2))])


def max_standardised_spread(generator: CoefficientGenerator, cond: torch.Tensor, samples: int) -> float:
    raw = generator.sample(cond, samples, generator=torch.Generator().manual_seed(1))
    z = generator.target_norm(raw).reshape(-1, raw.shape[-1])
    return float(z.std(0).max())


def ridge_prediction(train: dict, cond: np.ndarray, lam: float = 10.0) -> np.ndarray:
    x = np.concatenate([train["arcface"], train["appearance"]], 1)
    y = train["expression"]
    mean, std = x.mean(0), x.std(0) + 1e-6
    xn = (x - mean) / std
    w = np.linalg.solve(xn.T @ xn + lam * np.eye(xn.shape[1]), xn.T @ (y - y.mean(0)))
    return np.clip(((cond - mean) / std) @ w + y.mean(0), 0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    expgen = CoefficientGenerator.from_checkpoint(load_checkpoint(network_dir(args.checkpoints, "expgen"), "expgen"))
    idgen = CoefficientGenerator.from_checkpoint(load_checkpoint(network_dir(args.checkpoints, "idgen"), "idgen"))
    model = load_face_model_from_record(expgen.config.face_model)
    data = ShardDataset(args.data).arrays(["expression", "shape", "arcface", "appearance", "unoccluded"])
    n, m = min(args.images, len(data["shape"])), args.samples
    shape = torch.from_numpy(data["shape"][:n]).float()
    truth_expr = torch.from_numpy(data["expression"][:n]).float()
    cond_np = np.concatenate([data[EMBEDDING_FIELDS[role]][:n] for role in expgen.config.encoders], 1)
    cond = torch.from_numpy(cond_np).float()
    visible = unpack_bits(data["unoccluded"][:n], model.num_vertices)
    with torch.no_grad():
        truth = model(shape, truth_expr).vertices * 1000

    samples = expgen.sample(cond, m, generator=torch.Generator().manual_seed(0))
    samples = model.clamp_expression(samples.reshape(n * m, -1)).view(n, m, -1)  # (n, m, code_dim)

    def code_rms(code: torch.Tensor) -> np.ndarray:
        expression, pose = model.split_code(code)
        return visible_rms(model, shape, expression, truth, visible, pose)

    errors = np.stack([code_rms(samples[:, j]) for j in range(m)], 1)
    rows = [
        (f"ExpGen average hypothesis (SE, M={m})", errors.mean()),
        (f"ExpGen best of {m} (CSE)", errors.min(1).mean()),
        ("ExpGen mean of the hypotheses", code_rms(samples.mean(1)).mean()),
        ("neutral expression", visible_rms(model, shape, torch.zeros_like(truth_expr), truth, visible).mean()),
        ("random prior expression", visible_rms(model, shape, model.sample_prior(
            n, torch.Generator().manual_seed(2), expression=True).expression, truth, visible).mean()),
    ]
    train_folder = Path(expgen.config.data.get("path", ""))
    if train_folder.is_dir():
        train = ShardDataset(train_folder).arrays(["expression", "arcface", "appearance"])
        ridge = torch.from_numpy(ridge_prediction(train, cond_np)).float()
        rows.append(("ridge regression (condition -> coefficients)", visible_rms(model, shape, ridge, truth, visible).mean()))
    print(f"{n} images of {args.data}, checkpoints {args.checkpoints}")
    print(f"{'expression':<48}{'error (mm)':>10}")
    for label, value in rows:
        print(f"{label:<48}{value:10.3f}")
    print(f"largest standardised spread of one coefficient: ExpGen {max_standardised_spread(expgen, cond[:64], 10):.2f}, "
          f"IdGen {max_standardised_spread(idgen, torch.from_numpy(data['arcface'][:64]).float(), 10):.2f}")


if __name__ == "__main__":
    main()
