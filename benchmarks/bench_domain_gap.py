"""How far ArcFace (and appearance) embeddings of synthetic renders lie from those of real photos.

Usage: python benchmarks/bench_domain_gap.py --data TRAIN_DIR [--test HELDOUT_DIR] PHOTO... [--renders 500]

Every face the detector finds in the photos is embedded. Printed per encoder:
- mean cosine similarity within renders, within photos, and between the two;
- the accuracy and AUC of a domain classifier (shrunk LDA, 5-fold cross-validation, equal-size
  classes): 0.5 means the domains are indistinguishable;
- the median squared norm of the standardised embedding (standardised with render statistics,
  as the networks see it; renders give about the dimension, 512 for ArcFace): how far outside
  the training distribution a photo lands;
- the same after the mitigation the networks use (``networks.normalization``): the leading
  render-domain directions, fitted on *other* renders only (the training set), are projected out
  of render and photo embeddings alike, then re-normalised. No photo is needed to fit it;
- for reference, per-domain centring (each domain's own mean removed, test folds included: an
  optimistic figure that needs photo statistics; below 0.5 means no signal).
"""

from __future__ import annotations

import argparse

import numpy as np

import torch

from ofer.data.shards import ShardDataset
from ofer.frontend import get_frontend, load_image
from ofer.networks.normalization import domain_directions, remove_directions


def photo_embeddings(paths, encoders: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Identity (F, Di) and appearance (F, Da) embeddings of every face found in the photos."""
    frontend = get_frontend(encoders)
    faces = []
    for path in paths:
        image = load_image(path)
        faces.extend(frontend.face(image, det) for det in frontend.detect([image])[0])
    emb = frontend.embed(faces)
    return emb.identity, emb.appearance


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def domain_classifier(a: np.ndarray, b: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """Cross-validated accuracy and AUC of a shrunk LDA telling ``a`` (label 0) from ``b`` (label 1)."""
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    x = np.concatenate([a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]])
    y = np.r_[np.zeros(n), np.ones(n)]
    fold = rng.permutation(2 * n) % folds
    scores = np.zeros(2 * n)
    for k in range(folds):
        train, test = fold != k, fold == k
        m0, m1 = x[train & (y == 0)].mean(0), x[train & (y == 1)].mean(0)
        cov = np.cov(x[train].T) + 0.5 * np.eye(x.shape[1]) * np.trace(np.cov(x[train].T)) / x.shape[1]
        w = np.linalg.solve(cov, m1 - m0)
        scores[test] = (x[test] - 0.5 * (m0 + m1)) @ w
    return float(((scores > 0) == (y == 1)).mean()), auc(scores, y)


def centred(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def mean_cos(a: np.ndarray, b: np.ndarray, same: bool) -> float:
    a, b = a[np.linalg.norm(a, axis=1) > 0], b[np.linalg.norm(b, axis=1) > 0]  # appearance: zeros = no face
    an, bn = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    sims = an @ bn.T
    if same:
        sims = sims[~np.eye(len(a), dtype=bool)]
    return float(sims.mean())


def standardised_norm(x: np.ndarray, reference: np.ndarray) -> float:
    """Median squared norm of ``x`` standardised per dimension with ``reference`` statistics."""
    mean, std = reference.mean(0), reference.std(0) + 1e-9
    return float(np.median((((x - mean) / std) ** 2).sum(1)))


def project(x: np.ndarray, directions: torch.Tensor) -> np.ndarray:
    return remove_directions(torch.from_numpy(x).float(), directions).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="training renders (the projection is fitted on them)")
    parser.add_argument("--test", help="other renders to compare with the photos (default: tail of --data)")
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--renders", type=int, default=500)
    parser.add_argument("--directions", type=int, default=2, help="render-domain directions projected out")
    args = parser.parse_args()
    dataset = ShardDataset(args.data)
    data = dataset.arrays(["arcface", "appearance"])
    if args.test:
        test = ShardDataset(args.test).arrays(["arcface", "appearance"])
        test = {k: v[: args.renders] for k, v in test.items()}
        train = data
    else:
        test = {k: v[-args.renders :] for k, v in data.items()}
        train = {k: v[: -args.renders] for k, v in data.items()}
    arc, app = photo_embeddings(args.photos, dataset.manifest.encoders or None)  # the encoders of the renders
    photos = {"arcface": arc, "appearance": app}
    print(f"{len(test['arcface'])} renders, {len(arc)} faces in {len(args.photos)} photos")
    for name in ("arcface", "appearance"):
        r, p, fit = test[name], photos[name], train[name]
        acc, area = domain_classifier(r, p)
        acc_c, area_c = domain_classifier(centred(r), centred(p))
        print(f"{name:10s} cos render-render {mean_cos(r, r, True):.3f}  photo-photo {mean_cos(p, p, True):.3f}  "
              f"render-photo {mean_cos(r, p, False):.3f}  | domain classifier acc {acc:.2f} AUC {area:.2f}  "
              f"| standardised norm^2 renders {standardised_norm(r, fit):.0f} photos {standardised_norm(p, fit):.0f}  "
              f"| per-domain centring (oracle): AUC {area_c:.2f}")
        if name == "arcface":
            dirs = domain_directions(torch.from_numpy(fit).float(), args.directions)
            rp, pp, fp = project(r, dirs), project(p, dirs), project(fit, dirs)
            acc_p, area_p = domain_classifier(rp, pp)
            print(f"{'':10s} after projecting out {args.directions} render-domain directions: cos render-render "
                  f"{mean_cos(rp, rp, True):.3f}  photo-photo {mean_cos(pp, pp, True):.3f}  render-photo "
                  f"{mean_cos(rp, pp, False):.3f}  | domain classifier acc {acc_p:.2f} AUC {area_p:.2f}  "
                  f"| standardised norm^2 renders {standardised_norm(rp, fp):.0f} photos {standardised_norm(pp, fp):.0f}")


if __name__ == "__main__":
    main()
