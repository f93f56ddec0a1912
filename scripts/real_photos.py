"""Reconstruct real photos with and without a pasted occluder; draw renders only (no photo pixels).

Usage: python scripts/real_photos.py PHOTO... [--checkpoints RUN] [-o docs/real_photos.png]

For each photo: the clean photo and the same photo with an occluder (a hand emoji over the lower
face, drawn by ofer's occluder registry at MediaPipe's landmarks) are reconstructed; the figure
shows, per photo, the ranked identity and four expression hypotheses for both versions. Printed:
the identity change between clean and occluded (face-region RMS after similarity alignment, mm)
and the spread of identities across photos of the same person versus between different people.
"""

from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ofer.data.occluders import occlude
from ofer.geometry import apply_similarity, umeyama
from ofer.frontend.landmark_tables import MEDIAPIPE_TO_IBUG68
from ofer.frontend import default_landmarker, load_image
from ofer.methods import OFER, ReconstructionSettings
from ofer.methods.outputs import render_views


def occluded_copy(image: np.ndarray, seed: int) -> np.ndarray:
    found = default_landmarker().detect(image)
    if found is None:
        return image
    lmk68 = found.points[list(MEDIAPIPE_TO_IBUG68), :2]
    rng = np.random.default_rng(seed)
    for _ in range(20):  # a hand over the lower half of the face
        result = occlude(image, lmk68, "hand", rng)
        ys, xs = np.nonzero(result.mask)
        if len(ys) and ys.mean() > lmk68[30, 1]:
            return result.image
    return result.image


def aligned_rms_mm(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """RMS distance (mm) of face-region vertices after a similarity alignment of a onto b."""
    s, r, t = umeyama(a[mask], b[mask])
    moved = apply_similarity(a[mask], s, r, t)
    return float(np.sqrt(((moved - b[mask]) ** 2).sum(-1).mean()) * 1000)


def read_people(path: Path) -> dict[str, str]:
    """File stem -> person, from a CSV with ``file`` and ``person`` columns (empty if there is none)."""
    import csv

    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {Path(row["file"]).stem: row["person"] for row in csv.DictReader(handle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--checkpoints", type=Path, default=None)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/real_photos.png"))
    parser.add_argument("--draw", type=int, default=3, help="how many photos go into the figure")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="CSV with columns file,person (default: MANIFEST.csv beside the first photo, if any)")
    args = parser.parse_args()
    pipe = OFER.from_run(args.checkpoints)
    model = pipe.face_model
    mask = model.front_mask.numpy()
    settings = ReconstructionSettings(shapes=100, expressions=8, sampler="ddim", steps=50, seed=0)
    rows, identities, changes = [], {}, []
    for k, path in enumerate(args.photos):
        clean = load_image(path)
        hidden = occluded_copy(clean, seed=k)
        recs = pipe.reconstruct([clean, hidden], settings, [path.stem, path.stem + "_occluded"])
        if any(isinstance(r, Exception) for r in recs):
            print(f"{path}: no face found, skipped")
            continue
        identities[path.stem] = recs[0].identity_vertices
        change = aligned_rms_mm(recs[1].identity_vertices, recs[0].identity_vertices, mask)
        changes.append(change)
        print(f"{path.name}: identity change clean -> occluded {change:.2f} mm (face region, similarity-aligned)")
        if len(rows) < 2 * args.draw:
            for rec, label in zip(recs, ("clean", "occluded")):
                meshes = np.concatenate([rec.identity_vertices[None], rec.expression_vertices[:4]])
                tiles = render_views(model, meshes, size=160)["front"]
                strip = Image.fromarray(np.concatenate(list(tiles), 1))
                ImageDraw.Draw(strip).text((4, 3), f"{path.stem} ({label}): identity + 4 hypotheses", fill=(0, 0, 0))
                rows.append(np.asarray(strip))
    person = read_people(args.manifest or args.photos[0].parent / "MANIFEST.csv")
    names = list(identities)
    same, other = [], []
    for a, b in combinations(names, 2):
        d = aligned_rms_mm(identities[a], identities[b], mask)
        (same if person.get(a, a) == person.get(b, b) else other).append(d)
    if same:
        print(f"identity spread, same person: {np.mean(same):.2f} mm over {len(same)} pairs")
    if other:
        print(f"identity spread, different people: {np.mean(other):.2f} mm over {len(other)} pairs")
    if changes:
        print(f"identity change clean -> occluded: mean {np.mean(changes):.2f} mm over {len(changes)} photos")
    if same and other:
        print(f"separation (different / same person): {np.mean(other) / np.mean(same):.2f}")
    if rows:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, 0)).save(args.output)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
