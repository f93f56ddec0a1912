"""Fit the photo engine's expression directions in the generator's style space.

Usage: python scripts/style_directions.py PHOTO_FOLDER [PHOTO_FOLDER ...] [-o src/ofer/data/stylegan_directions.npz]

Every face of the photo folders (``ofer synth photo``, one picture per face) is regenerated up to
its style (the latent is drawn from the face's seed, index and accepted attempt, then mapped and
truncated with the folder's psi: the mapping network only, no image), and MediaPipe's blendshape
scores of its clean picture (stored in the folder) are regressed on the style by ridge regression
(the ridge chosen on a held-out fifth, then refitted on all faces). Prints the held-out R^2 of each
read-out; writes :class:`ofer.data.stylegan.StyleDirections`.

The eye-closing direction (``eyesClosed``, :data:`ofer.data.stylegan.CLOSING`) is blink's direction with
two parts projected out: the top ``--identity-subspace`` K right-singular directions of a ridge
regression from the style to the clean picture's unit ArcFace embedding (the styles that change the
person: glasses, age) and the smile direction. Its gain is blink's read-out along it.
"""

import argparse
from pathlib import Path

import numpy as np

from ofer.data.shards import Manifest, read_npz
from ofer.errors import InputError
from ofer.data.stylegan import (CLOSING, DIRECTIONS_FILE, READOUTS, Z_DIM, StyleDirections, face_generator,
                                readout_score, style_directions)

RIDGES = (1e-2, 1e-1, 1.0, 10.0, 100.0)


def faces_of(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F, 512) truncated styles, (F, 52) blendshape scores and (F, 512) unit ArcFace embeddings of the
    clean pictures of a photo folder's faces."""
    manifest = Manifest.load(folder)
    if manifest.kind != "photo":
        raise SystemExit(f"{folder}: not a photo folder (kind {manifest.kind!r})")
    psi = float(manifest.config["psi"])
    generator = face_generator(2)
    styles, scores, identities = [], [], []
    for path in sorted(folder.glob("shard_*.npz")):  # finished shards, also while the folder is being made
        try:
            arrays = read_npz(path)
        except InputError:  # a shard being written
            continue
        first = (arrays["variant"] == 0) & (arrays.get("picture", np.zeros_like(arrays["variant"])) == 0)
        for index, attempt, blend, arc in zip(arrays["identity"][first], arrays["attempt"][first],
                                              arrays["blendshapes"][first], arrays["arcface_clean"][first]):
            z = np.random.default_rng([manifest.seed, int(index), int(attempt)]).standard_normal(Z_DIM)
            styles.append(generator.truncated_style(z.astype(np.float32), psi)[0])
            scores.append(blend)
            identities.append(arc / np.linalg.norm(arc))
    return np.asarray(styles, np.float64), np.asarray(scores, np.float64), np.asarray(identities, np.float64)


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Weights (512,) and intercept of ``y ~ b + x w`` with penalty ``lam |w|^2`` (x centred inside)."""
    mx, my = x.mean(0), y.mean()
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + lam * len(x) * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, float(my - mx @ w)


def identity_subspace(styles: np.ndarray, identities: np.ndarray, k: int, lam: float = 1.0) -> np.ndarray:
    """(512, k) orthonormal style directions that change the ArcFace embedding most (ridge ``lam``)."""
    xc, yc = styles - styles.mean(0), identities - identities.mean(0)
    weights = np.linalg.solve(xc.T @ xc + lam * len(xc) * np.eye(xc.shape[1]), xc.T @ yc)  # (512, 512)
    return np.linalg.svd(weights, full_matrices=False)[0][:, :k]


def closing_direction(styles, scores, identities, blink: np.ndarray, smile: np.ndarray, k: int, seed: int = 0):
    """The eye-closing unit direction, its gain, intercept, spread and held-out R^2 (blink read-out)."""
    basis = np.linalg.qr(np.concatenate([identity_subspace(styles, identities, k), smile[:, None]], 1))[0]
    direction = blink - basis @ (basis.T @ blink)
    direction /= np.linalg.norm(direction)
    y, t = readout_score(scores, "blink"), styles @ direction
    order = np.random.default_rng(seed).permutation(len(t))
    held, train = order[: len(order) // 5], order[len(order) // 5:]
    slope, intercept = np.polyfit(t[train], y[train], 1)
    r2 = 1.0 - (y[held] - (intercept + slope * t[held])).var() / max(y[held].var(), 1e-12)
    gain, intercept = np.polyfit(t, y, 1)
    print(f"{CLOSING:12s} held-out R^2 {r2:.3f}, cosine to blink {direction @ blink:.3f} (identity subspace {k}), "
          f"style spread along it {t.std():.3f} (score {gain * t.std():.3f})")
    return direction, float(gain), float(intercept), float(t.std()), float(r2)


def fit(styles: np.ndarray, scores: np.ndarray, digest: str, seed: int = 0,
        identities: np.ndarray | None = None, identity_k: int = 32) -> StyleDirections:
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
    if identities is not None:
        found = closing_direction(styles, scores, identities, directions[names.index("blink")],
                                  directions[names.index("smile")], identity_k, seed)
        names.append(CLOSING)
        for values, value in zip((directions, gains, intercepts, spread, r2s), found):
            values.append(value)
    return StyleDirections(tuple(names), np.asarray(directions), np.asarray(gains), np.asarray(intercepts),
                           np.asarray(spread), np.asarray(r2s), digest)


def with_closing(kept: StyleDirections, styles, scores, identities, k: int) -> StyleDirections:
    """``kept``'s read-out directions as they are, and the eye-closing one fitted anew from them."""
    rows = [i for i, name in enumerate(kept.names) if name != CLOSING]
    direction, gain, intercept, spread, r2 = closing_direction(
        styles, scores, identities, kept.directions[kept.names.index("blink")],
        kept.directions[kept.names.index("smile")], k)
    return StyleDirections(tuple(kept.names[i] for i in rows) + (CLOSING,),
                           np.vstack([kept.directions[rows], direction]), np.append(kept.gains[rows], gain),
                           np.append(kept.intercepts[rows], intercept), np.append(kept.spread[rows], spread),
                           np.append(kept.r2[rows], r2), kept.digest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=DIRECTIONS_FILE)
    parser.add_argument("--identity-subspace", type=int, default=32, metavar="K",
                        help="identity-changing style directions projected out of the eye-closing one")
    parser.add_argument("--closing-only", action="store_true",
                        help="keep the output file's read-out directions (the data made with them stay as "
                             "they are) and refit only the eye-closing one from them")
    args = parser.parse_args()
    parts = [faces_of(f) for f in args.folders]
    styles, scores, identities = (np.concatenate([p[i] for p in parts]) for i in range(3))
    print(f"{len(styles)} faces from {len(args.folders)} folder(s)")
    digest = face_generator(2).digest
    if args.closing_only:
        directions = with_closing(style_directions(digest, args.output), styles, scores, identities,
                                  args.identity_subspace)
    else:
        directions = fit(styles, scores, digest, identities=identities, identity_k=args.identity_subspace)
    print(f"-> {directions.save(args.output)}")


if __name__ == "__main__":
    main()
