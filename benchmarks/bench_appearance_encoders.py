"""Which appearance encoder carries expression? Ridge regression from embedding to expression, held out.

Renders of the built-in head (random identity + random expression, the simple frontal Lambert
renderer of ``ofer.facemodels.autolandmarks``, 224 px), cut like photos (SCRFD box -> 1.6x square
crop -> 224), embedded by each candidate; a ridge regression (features standardised, penalty chosen
by 5-fold cross-validation on the training renders) predicts the 52 expression coefficients.

Reported on the held-out renders:
- R2 coef: 1 - SSE / SST pooled over the 52 coefficients (variance-weighted R^2);
- R2 mesh: the same for the expression displacement of the face-region vertices (coefficients mapped
  through the model's expression basis, so each coefficient counts by how much it moves the face);
- with a grey patch over the lower face (nose to chin) or the upper face (brows to eyes): R^2 of all
  coefficients, and of the coefficients of the part left visible (brow*/eye* when the lower face is
  hidden; jaw*/mouth*/cheekPuff when the upper face is hidden). Regressions for the occluded columns
  are fitted on clean + occluded training renders together.

Usage: OFER_CACHE_DIR=/tmp/ofer-cache-frontend python benchmarks/bench_appearance_encoders.py [--n 400]
(about 12 minutes on 2 CPU cores: 2.5 min of rendering, most of the rest is DINOv2 on 1200 crops)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

UPPER = ("brow", "eye")
SHOWN = (
    "jawOpen",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "mouthSmileLeft",
    "mouthFunnel",
    "mouthPucker",
    "browInnerUp",
    "eyeLookUpLeft",
)
LOWER = ("jaw", "mouth", "cheekPuff")


def render_set(n: int, seed: int, size: int = 224):
    """n renders: images (n, size, size, 3), expression (n, 52), 68 landmarks in pixels (n, 68, 2)."""
    import ofer
    from ofer.facemodels.autolandmarks import frontal_view, shade_frontal
    from ofer.render.raster_numpy import rasterize

    model = ofer.load_face_model("default")
    sample = model.sample_prior(n, torch.Generator().manual_seed(seed), expression=True)
    with torch.no_grad():
        out = model(sample.shape, sample.expression)
    faces = model.faces.numpy()
    part = model.part.numpy()
    images, landmarks = [], []
    for i in range(n):
        vertices = out.vertices[i].numpy().astype(np.float64)
        screen, scale = frontal_view(vertices, size)
        frags = rasterize(screen, faces, size, size)
        images.append(shade_frontal(vertices, faces, part, frags))
        lo, hi = vertices[:, :2].min(0), vertices[:, :2].max(0)
        centre = 0.5 * (lo + hi)
        lmk = out.landmarks68[i].numpy()[:, :2]
        landmarks.append(
            np.stack([(lmk[:, 0] - centre[0]) * scale + size / 2, -(lmk[:, 1] - centre[1]) * scale + size / 2], -1)
        )
    return model, np.stack(images), sample.expression.numpy(), np.stack(landmarks)


def crop_like_photos(images: np.ndarray, landmarks: np.ndarray):
    """Detector box -> appearance crop; landmarks mapped into the crop. Falls back to the whole image."""
    from ofer.frontend import crop_appearance, default_detector, main_face
    from ofer.frontend.align import appearance_window

    detector = default_detector()
    crops, points, found = [], [], 0
    for image, lmk in zip(images, landmarks):
        dets = detector.detect(image)
        if dets:
            found += 1
            box = dets[main_face(dets, image.shape)].box
            x0, y0, side = appearance_window(box)
        else:
            x0, y0, side = 0, 0, image.shape[0]
            box = np.array([0, 0, side / 1.6, side / 1.6])
        crops.append(crop_appearance(image, box) if dets else image.copy())
        points.append((lmk - [x0, y0]) * (224.0 / side))
    return np.stack(crops), np.stack(points), found


def occlude(crops: np.ndarray, points: np.ndarray, where: str, rng: np.random.Generator) -> np.ndarray:
    """A grey rectangle (random grey level, jittered edges) over the lower or upper face."""
    out = crops.copy()
    for crop, lmk in zip(out, points):
        width = lmk[16, 0] - lmk[0, 0]
        x0 = lmk[0, 0] - rng.uniform(0.0, 0.15) * width
        x1 = lmk[16, 0] + rng.uniform(0.0, 0.15) * width
        if where == "lower":  # nose tip to below the chin
            y0 = lmk[30, 1] + rng.uniform(-0.05, 0.05) * width
            y1 = lmk[8, 1] + rng.uniform(0.05, 0.3) * width
        else:  # above the brows to below the eyes
            y0 = lmk[17:27, 1].min() - rng.uniform(0.1, 0.3) * width
            y1 = lmk[36:48, 1].max() + rng.uniform(0.05, 0.12) * width
        grey = int(rng.integers(90, 200))
        r0, r1 = int(max(0, np.floor(y0))), int(min(224, np.ceil(y1)))
        c0, c1 = int(max(0, np.floor(x0))), int(min(224, np.ceil(x1)))
        crop[r0:r1, c0:c1] = grey
    return out


def ridge_fit(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0):
    """Ridge with standardised features and intercept; penalty by k-fold CV. Returns a predict function."""
    alphas = np.logspace(-3, 5, 17)

    def solve(xt, yt):
        """Weights for every alpha from one SVD: list of (predict function) per alpha."""
        mu, sd = xt.mean(0), xt.std(0) + 1e-6
        u, s, vt = np.linalg.svd((xt - mu) / sd, full_matrices=False)
        ym = yt.mean(0)
        uty = u.T @ (yt - ym)

        def predictor(alpha):
            w = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
            return lambda xn: ((xn - mu) / sd) @ w + ym

        return predictor

    order = np.random.default_rng(seed).permutation(len(x))
    errors = np.zeros(len(alphas))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        predictor = solve(x[train], y[train])
        for a, alpha in enumerate(alphas):
            errors[a] += ((predictor(alpha)(x[test]) - y[test]) ** 2).sum()
    return solve(x, y)(alphas[int(np.argmin(errors))])


def r2(y: np.ndarray, pred: np.ndarray, columns=None) -> float:
    if columns is not None:
        y, pred = y[:, columns], pred[:, columns]
    return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400, help="renders (3/4 train, 1/4 test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoders", default="mediapipe,dinov2,efficientnet")
    parser.add_argument("--save", metavar="NPZ", help="also save the targets and every embedding")
    args = parser.parse_args()
    os.environ.setdefault("OFER_CACHE_DIR", "/tmp/ofer-cache-frontend")
    from ofer.frontend.encoders import DinoV2Encoder, MediaPipeExpressionEncoder, get_encoder

    t = time.perf_counter()
    model, images, expr, lmk = render_set(args.n, args.seed)
    crops, points, found = crop_like_photos(images, lmk)
    rng = np.random.default_rng(args.seed + 1)
    sets = {
        "clean": crops,
        "lower": occlude(crops, points, "lower", rng),
        "upper": occlude(crops, points, "upper", rng),
    }
    print(f"{args.n} renders in {time.perf_counter() - t:.0f} s; SCRFD found the face in {found}/{args.n}")

    names = model.expression_names
    upper = [i for i, n in enumerate(names) if n.startswith(UPPER)]
    lower = [i for i, n in enumerate(names) if n.startswith(LOWER)]
    with torch.no_grad():
        zero = torch.zeros(1, model.shape_dim)
        basis = model(zero.expand(len(names), -1), torch.eye(len(names))).vertices - model(zero).vertices
    basis = basis[:, model.front_mask].reshape(len(names), -1).numpy()  # (52, 3 V_face)

    n_train = int(0.75 * args.n)
    tr, te = np.arange(n_train), np.arange(n_train, args.n)
    embeddings: dict[str, dict[str, np.ndarray]] = {}
    timing: dict[str, float] = {}
    for key in args.encoders.split(","):
        encoder = get_encoder(key)
        encoder.embed(crops[:2])  # load
        t = time.perf_counter()
        if isinstance(encoder, DinoV2Encoder):  # one pass over the tokens gives the variants
            tokens = {cond: encoder.tokens(c) for cond, c in sets.items()}
            embeddings[encoder.name] = {c: np.concatenate([v[:, 0], v[:, 1:].mean(1)], 1) for c, v in tokens.items()}
        else:
            embeddings[encoder.name] = {cond: encoder.embed(c) for cond, c in sets.items()}
        timing[encoder.name] = (time.perf_counter() - t) / (3 * args.n) * 1000
        if isinstance(encoder, MediaPipeExpressionEncoder):
            e = embeddings[encoder.name]
            print("MediaPipe found a face: " + ", ".join(f"{c} {e[c][:, -1].mean() * 100:.0f}%" for c in e))
            embeddings["  mediapipe blendshapes only (52+flag)"] = {
                c: v[:, list(range(52)) + [259]] for c, v in e.items()
            }
            timing["  mediapipe blendshapes only (52+flag)"] = timing[encoder.name]
        if isinstance(encoder, DinoV2Encoder):
            embeddings["  dinov2 class token only"] = {c: v[:, 0] for c, v in tokens.items()}
            embeddings["  dinov2 patch tokens, 4x4 grid"] = {
                c: v[:, 1:].reshape(-1, 4, 4, 4, 4, 384).mean((2, 4)).reshape(len(v), -1) for c, v in tokens.items()
            }
            for name in ("  dinov2 class token only", "  dinov2 patch tokens, 4x4 grid"):
                timing[name] = timing[encoder.name]
            del tokens
    mediapipe, dinov2 = MediaPipeExpressionEncoder.name, DinoV2Encoder.name
    if mediapipe in embeddings and dinov2 in embeddings:
        a, b = embeddings[mediapipe], embeddings[dinov2]
        embeddings["  mediapipe + dinov2"] = {c: np.concatenate([a[c], b[c]], 1) for c in a}
        timing["  mediapipe + dinov2"] = timing[mediapipe] + timing[dinov2]

    if args.save:
        np.savez(
            args.save,
            expr=expr,
            basis=basis,
            n_train=n_train,
            names=np.array(names),
            **{f"{name.strip()}|{c}": v for name, e in embeddings.items() for c, v in e.items()},
        )
    header = f"{'encoder':40s} {'dim':>5s} {'ms/crop':>7s} | {'R2 coef':>7s} {'R2 mesh':>7s} | {'lower hidden':>12s} {'upper vis.':>10s} | {'upper hidden':>12s} {'lower vis.':>10s} | {'clean*':>6s}"
    print("\nheld-out R^2 (clean: fitted on clean; occluded columns and clean*: fitted on clean + occluded)")
    print(header)
    print("-" * len(header))
    per_coefficient = {}
    for name, e in embeddings.items():
        clean = ridge_fit(e["clean"][tr], expr[tr])
        pred = clean(e["clean"][te])
        per_coefficient[name] = [r2(expr[te], pred, [names.index(k)]) for k in SHOWN]
        x_mix = np.concatenate([e[c][tr] for c in ("clean", "lower", "upper")])
        mixed = ridge_fit(x_mix, np.concatenate([expr[tr]] * 3))
        p_low, p_up, p_clean = mixed(e["lower"][te]), mixed(e["upper"][te]), mixed(e["clean"][te])
        mesh = r2(expr[te] @ basis, pred @ basis)
        print(
            f"{name:40s} {e['clean'].shape[1]:5d} {timing[name]:7.1f} | {r2(expr[te], pred):7.3f} {mesh:7.3f} | "
            f"{r2(expr[te], p_low):12.3f} {r2(expr[te], p_low, upper):10.3f} | "
            f"{r2(expr[te], p_up):12.3f} {r2(expr[te], p_up, lower):10.3f} | {r2(expr[te], p_clean):6.3f}"
        )

    print("\nheld-out R^2 of single coefficients (fitted on clean)")
    print(f"{'encoder':40s} " + " ".join(f"{k[:13]:>13s}" for k in SHOWN))
    for name, values in per_coefficient.items():
        print(f"{name:40s} " + " ".join(f"{v:13.3f}" for v in values))


if __name__ == "__main__":
    main()
