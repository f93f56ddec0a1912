"""How far ArcFace (and appearance) embeddings of synthetic renders lie from those of real photos.

Usage: python benchmarks/bench_domain_gap.py --data DATA_DIR PHOTO... [--renders 500]

Every face the detector finds in the photos is embedded. Printed per encoder:
- mean cosine similarity within renders, within photos, and between the two;
- the accuracy and AUC of a domain classifier (shrunk LDA, 5-fold cross-validation, equal-size
  classes): 0.5 means the domains are indistinguishable;
- the same after per-domain centring (each domain's mean removed, then re-normalised), the
  simplest mitigation (it needs a mean photo embedding at inference). The means are taken over
  all samples, test folds included, so this figure is optimistic; below 0.5 means no signal.
"""

from __future__ import annotations

import argparse

import numpy as np

from ofer.data.shards import ShardDataset
from ofer.frontend import align_arcface, crop_appearance, get_frontend, load_image


def photo_embeddings(paths) -> tuple[np.ndarray, np.ndarray]:
    frontend = get_frontend()
    arc, app = [], []
    for path in paths:
        image = load_image(path)
        for det in frontend.detector.detect(image):
            arc.append(frontend.arcface.embed(align_arcface(image, det.keypoints)[None])[0])
            app.append(frontend.appearance.embed(crop_appearance(image, det.box)[None])[0])
    return np.array(arc), np.array(app)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--renders", type=int, default=500)
    args = parser.parse_args()
    data = ShardDataset(args.data).arrays(["arcface", "appearance"])
    renders = {"arcface": data["arcface"][: args.renders], "appearance": data["appearance"][: args.renders]}
    arc, app = photo_embeddings(args.photos)
    photos = {"arcface": arc, "appearance": app}
    print(f"{len(renders['arcface'])} renders, {len(arc)} faces in {len(args.photos)} photos")
    for name in ("arcface", "appearance"):
        r, p = renders[name], photos[name]
        acc, area = domain_classifier(r, p)
        acc_c, area_c = domain_classifier(centred(r), centred(p))
        print(f"{name:10s} cos render-render {mean_cos(r, r, True):.3f}  photo-photo {mean_cos(p, p, True):.3f}  "
              f"render-photo {mean_cos(r, p, False):.3f}  | domain classifier acc {acc:.2f} AUC {area:.2f}  "
              f"| after per-domain centring: acc {acc_c:.2f} AUC {area_c:.2f}")


if __name__ == "__main__":
    main()
