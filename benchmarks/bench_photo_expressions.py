"""What the photo engine's expression pictures are worth: identity kept, expression moved, labels steadier.

Usage: python benchmarks/bench_photo_expressions.py --n 16 [--expressions 3] [--seed 21] [--out DIR]

Makes (or reuses) ``--n`` faces of ``ofer synth photo --expressions P --variants 1 --clean-images``,
then prints, over the faces:

- ArcFace cosine similarity (clean pictures) between the drawn picture and its moved copies, against
  the drawn pictures of different faces: do the moves keep the person?
- MediaPipe's read-out change (smile, jawOpen, blink: its blendshape scores) of each moved picture
  against the change the direction predicts (move x gain): do the moves do what they say?
- Identity label noise: the face-region RMS (similarity-aligned, mm) between single-picture fits of
  two pictures of one face, and between each single fit and the shared (multi-image) fit.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ofer.data.photo import PhotoConfig, PhotoMaker, generate_photo
from ofer.data.shards import ShardDataset
from ofer.data.stylegan import face_generator, readout_score, style_directions
from ofer.evaluation.photo_metrics import identity_change
from ofer.fitting import LandmarkObservations, fit_landmarks
from ofer.frontend import get_frontend

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--expressions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--out", type=Path, default=Path("bench_photo_expressions"))
    args = parser.parse_args()
    config = PhotoConfig(variants=1, expressions=args.expressions, store_clean_image=True)
    started = time.perf_counter()
    _, made = generate_photo(args.out, "default", args.n, args.seed, config, progress=True)
    if made:
        print(f"{args.n} faces x {args.expressions} pictures in {time.perf_counter() - started:.0f} s "
              f"(one process, embeddings and workers' start included)")
    data = ShardDataset(args.out).arrays(["image_clean", "identity", "picture", "style_move", "shape",
                                          "mediapipe478", "blendshapes"])
    faces, pictures = data["identity"], data["picture"]
    directions = style_directions(face_generator(1).digest)
    names, gains = directions.names, directions.gains

    frontend = get_frontend()
    found = frontend.main_faces(list(data["image_clean"]))
    keep = np.array([f is not None for f in found])
    arc = np.full((len(found), 512), np.nan, np.float32)
    arc[keep] = frontend.embed([f for f in found if f is not None]).identity
    arc /= np.linalg.norm(arc, axis=1, keepdims=True)
    base = {int(i): r for r, (i, p) in enumerate(zip(faces, pictures)) if p == 0}
    same = [float(arc[base[int(i)]] @ arc[r]) for r, (i, p) in enumerate(zip(faces, pictures)) if p > 0]
    firsts = np.array(list(base.values()))
    cross = arc[firsts] @ arc[firsts].T
    different = cross[~np.eye(len(firsts), dtype=bool)]
    print(f"ArcFace cosine, drawn vs moved picture of one face: mean {np.nanmean(same):.3f} "
          f"(min {np.nanmin(same):.3f}); drawn pictures of different faces: mean {np.nanmean(different):.3f} "
          f"(max {np.nanmax(different):.3f})")

    for k, name in enumerate(names):
        rows = [r for r in range(len(faces)) if pictures[r] > 0 and data["style_move"][r, k] != 0]
        if not rows:
            continue
        moved = np.array([base[int(faces[r])] for r in rows])
        seen = readout_score(data["blendshapes"][rows], name) - readout_score(data["blendshapes"][moved], name)
        said = np.array([data["style_move"][r, k] * gains[k] for r in rows])
        r = np.corrcoef(seen, said)[0, 1] if len(rows) > 2 else float("nan")
        print(f"{name:8s} {len(rows):3d} moved pictures: MediaPipe change mean |{np.abs(seen).mean():.3f}|, "
              f"predicted |{np.abs(said).mean():.3f}|, r {r:.2f}")

    # the labels: the engine's own steps again, each picture fitted alone and the face's pictures together
    maker = PhotoMaker("default", config)
    attempts = ShardDataset(args.out).arrays(["attempt"])["attempt"]
    model, front = maker.model, maker.model.front_mask.numpy()
    pair, to_shared = [], []
    for i in base:
        rows = [r for r in range(len(faces)) if faces[r] == i]
        styles, _ = maker.styles(i, args.seed, int(attempts[rows[0]]))
        seen = [maker._observe(maker.generator.image_of_style(style))[0] for style in styles]
        landmarks = [found[1] for found in seen]
        size = (config.image_size, config.image_size)
        with torch.no_grad():
            together = fit_landmarks(model, LandmarkObservations.from_mediapipe(landmarks, size), maker.fit_options,
                                     shared_shape=True)
            alone = [fit_landmarks(model, LandmarkObservations.from_mediapipe([lm], size), maker.fit_options)
                     for lm in landmarks]
            shared = model(together.shape[:1]).vertices[0].numpy() * 1000
            single = [model(fit.shape).vertices[0].numpy() * 1000 for fit in alone]
        to_shared += [identity_change(mesh, shared, front) for mesh in single]
        pair += [identity_change(a, b, front) for k, a in enumerate(single) for b in single[k + 1:]]
    print(f"identity labels (neutral meshes, face region, similarity-aligned, mm): single-picture fits of two "
          f"pictures of one face differ by {np.mean(pair):.2f}; a single fit differs from the shared fit by "
          f"{np.mean(to_shared):.2f}")


if __name__ == "__main__":
    main()
