"""Fit the photo engine's expression directions in the generator's style space.

Usage: python scripts/style_directions.py PHOTO_FOLDER [PHOTO_FOLDER ...] [-o src/ofer/data/stylegan_directions.npz]

Every face of the photo folders (``ofer synth photo``, one picture per face) is regenerated up to
its style (the latent is drawn from the face's seed, index and accepted attempt, then mapped and
truncated with the folder's psi: the mapping network only, no image), and MediaPipe's blendshape
scores of its clean picture (stored in the folder) are regressed on the style by ridge regression
(the ridge chosen on a held-out fifth, then refitted on all faces). Prints the held-out R^2 of each
read-out; writes :class:`ofer.data.stylegan.StyleDirections`.
"""

import argparse
from pathlib import Path

import numpy as np

from ofer.data.shards import Manifest, read_npz
from ofer.errors import InputError
from ofer.data.stylegan import DIRECTIONS_FILE, READOUTS, Z_DIM, StyleDirections, face_generator, readout_score

RIDGES = (1e-2, 1e-1, 1.0, 10.0, 100.0)


def faces_of(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(F, 512) truncated styles and (F, 52) blendshape scores of a photo folder's faces."""
    manifest = Manifest.load(folder)
    if manifest.kind != "photo":
        raise SystemExit(f"{folder}: not a photo folder (kind {manifest.kind!r})")
    psi = float(manifest.config["psi"])
    generator = face_generator(2)
    styles, scores = [], []
    for path in sorted(folder.glob("shard_*.npz")):  # finished shards, also while the folder is being made
        try:
            arrays = read_npz(path)
        except InputError:  # a shard being written
            continue
        first = (arrays["variant"] == 0) & (arrays.get("picture", np.zeros_like(arrays["variant"])) == 0)
        for index, attempt, blend in zip(arrays["identity"][first], arrays["attempt"][first],
                                         arrays["blendshapes"][first]):
            z = np.random.default_rng([manifest.seed, int(index), int(attempt)]).standard_normal(Z_DIM)
            styles.append(generator.truncated_style(z.astype(np.float32), psi)[0])
            scores.append(blend)
    return np.asarray(styles, np.float64), np.asarray(scores, np.float64)


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Weights (512,) and intercept of ``y ~ b + x w`` with penalty ``lam |w|^2`` (x centred inside)."""
    mx, my = x.mean(0), y.mean()
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + lam * len(x) * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, float(my - mx @ w)


def fit(styles: np.ndarray, scores: np.ndarray, digest: str, seed: int = 0) -> StyleDirections:
    order = np.random.default_rng(seed).permutation(len(styles))
    held, train = order[: len(order) // 5], order[len(order) // 5:]
    names, directions, gains, intercepts, spread, r2s = [], [], [], [], [], []
    for name in READOUTS:
        y = readout_score(scores, name)
        best = None
        for lam in RIDGES:
            w, b = ridge(styles[train], y[train], lam)
            residual = y[held] - (styles[held] @ w + b)
            r2 = 1.0 - residual.var() / max(y[held].var(), 1e-12)
            if best is None or r2 > best[0]:
                best = (r2, lam)
        w, b = ridge(styles, y, best[1])
        gain = float(np.linalg.norm(w))
        direction = w / gain
        names.append(name)
        directions.append(direction)
        gains.append(gain)
        intercepts.append(b)
        spread.append(float((styles @ direction).std()))
        r2s.append(best[0])
        print(f"{name:12s} held-out R^2 {best[0]:.3f} (ridge {best[1]:g}), score mean {y.mean():.3f} "
              f"sd {y.std():.3f}, style spread along it {spread[-1]:.3f} (score {gain * spread[-1]:.3f})")
    return StyleDirections(tuple(names), np.asarray(directions), np.asarray(gains), np.asarray(intercepts),
                           np.asarray(spread), np.asarray(r2s), digest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=DIRECTIONS_FILE)
    args = parser.parse_args()
    parts = [faces_of(f) for f in args.folders]
    styles, scores = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    print(f"{len(styles)} faces from {len(args.folders)} folder(s)")
    directions = fit(styles, scores, face_generator(2).digest)
    print(f"-> {directions.save(args.output)}")


if __name__ == "__main__":
    main()
