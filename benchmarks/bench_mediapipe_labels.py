"""How good are MediaPipe's blendshape scores as expression labels of the built-in head? On renders
with exact labels: the expressive mesh with MediaPipe's scores of the clean render (``appearance_clean``
[:52], name by name) against the true one, both on the true shape, vs the neutral expression.

Usage: python benchmarks/bench_mediapipe_labels.py --data data/train10k [--shards 16]

Prints the face-region RMS (similarity-aligned, mm) per label source over the renders where MediaPipe
found the face; the last ``--shards`` shards of the folder are used.
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from ofer.data.shards import Manifest, read_npz
from ofer.evaluation.photo_metrics import identity_change
from ofer.facemodels import load_face_model_from_record
from ofer.frontend.landmarker import BLENDSHAPE_NAMES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a render folder (ofer synth train)")
    parser.add_argument("--shards", type=int, default=16)
    args = parser.parse_args()
    manifest = Manifest.load(args.data)
    model = load_face_model_from_record(manifest.face_model)
    pairs = [(i, BLENDSHAPE_NAMES.index(n)) for i, n in enumerate(model.expression_names) if n in BLENDSHAPE_NAMES]
    ours, theirs = map(list, zip(*pairs))
    front = model.front_mask.numpy()
    errors = {"MediaPipe's scores": [], "neutral expression": []}
    for record in manifest.shards[-args.shards:]:
        d = read_npz(args.data / record.name)
        found = d["appearance_clean"][:, 259] > 0  # MediaPipe found the clean render's face
        shape, true = torch.from_numpy(d["shape"][found]), torch.from_numpy(d["expression"][found])
        scores = true.clone()
        scores[:, ours] = torch.from_numpy(d["appearance_clean"][found][:, theirs])
        with torch.no_grad():
            reference = model(shape, true).vertices.numpy() * 1000.0
            for label, expression in zip(errors, (scores, torch.zeros_like(true))):
                meshes = model(shape, expression).vertices.numpy() * 1000.0
                errors[label] += [identity_change(a, b, front) for a, b in zip(meshes, reference)]
    for label, values in errors.items():
        print(f"{label:<22} renders {len(values)}: expression error mean {np.mean(values):.2f} mm, "
              f"median {np.median(values):.2f} mm")


if __name__ == "__main__":
    main()
