"""Which expressions can a data folder teach? The range of MediaPipe's blendshape scores of the clean
pictures (photo folders: ``blendshapes``; render folders: ``appearance_clean``[:52]) per data folder.

Usage: python benchmarks/bench_label_ranges.py data/photo_train data/photo_expr data/train10k

Prints mean, spread, 90th percentile and the share above 0.5 of the scores that drive the real-photo
report (smile, jaw open, blink): a folder where a score never leaves a narrow band cannot teach that
expression, and a network trained mostly on it hides that part of the face's uncertainty.
"""

import argparse
from pathlib import Path

import numpy as np

from ofer.data.shards import Manifest, read_npz
from ofer.frontend.landmarker import BLENDSHAPE_NAMES

SCORES = ("mouthSmileLeft", "jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "browInnerUp")


def clean_scores(folder: Path) -> np.ndarray:
    """(N, 52) MediaPipe scores of the folder's clean pictures (rows where MediaPipe found no face dropped)."""
    manifest = Manifest.load(folder)
    field = "blendshapes" if manifest.kind == "photo" else "appearance_clean"
    rows = [read_npz(folder / shard.name)[field][:, :52] for shard in manifest.shards]
    scores = np.concatenate(rows).astype(np.float64)
    return scores[np.isfinite(scores).all(axis=1) & (np.abs(scores).sum(axis=1) > 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    args = parser.parse_args()
    print(f"{'folder':<16}{'score':<16}{'mean':>7}{'std':>7}{'p90':>7}{'>0.5':>7}")
    for folder in args.folders:
        scores = clean_scores(folder)
        for name in SCORES:
            v = scores[:, BLENDSHAPE_NAMES.index(name)]
            print(f"{folder.name:<16}{name:<16}{v.mean():>7.3f}{v.std():>7.3f}{np.percentile(v, 90):>7.3f}"
                  f"{(v > 0.5).mean():>7.3f}")
        print(f"{folder.name:<16}({len(scores)} pictures)")


if __name__ == "__main__":
    main()
