"""Does ExpGen know what it cannot see? Its blink on photo records whose eyes are hidden, training vs held out.

For every record of a photo folder whose occluder covers the eyes (group ``glasses``: sunglasses, eye
bands, eye glyphs), ExpGen samples M hypotheses from the record's stored embeddings (the ranked
identity of the run's IdGen/IdRank as in ``ofer reconstruct``) and the script prints the mean
absolute error of the mean hypothesis's blink against MediaPipe's score on the clean picture, and
the spread (std over the hypotheses) of the blink, and the same for the smile and jawOpen, which those
records show (a calibrated network is sure of them and unsure of the blink). A network that memorised its training rows has a
small error *and* a small spread on its own training folder (it recognises the row and reproduces its
hidden label) but not on a held-out one; a calibrated one has a spread that grows with the error.

    python benchmarks/bench_expgen_hidden_eyes.py --checkpoints RUN --data data/photo_eyeshide data/photo_heldout
"""

from __future__ import annotations

import argparse

import numpy as np

from ofer.data.occluders import OCCLUDER_KINDS, kind_group
from ofer.data.shards import ShardDataset
from ofer.frontend.landmarker import BLENDSHAPE_NAMES
from ofer.methods import get
from ofer.methods.base import ReconstructionSettings

GROUPS = {"blink": ("eyeBlinkLeft", "eyeBlinkRight"), "smile": ("mouthSmileLeft", "mouthSmileRight"),
          "jawOpen": ("jawOpen",)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--limit", type=int, default=48, help="eye-hidden records per folder")
    parser.add_argument("--expressions", type=int, default=15)
    args = parser.parse_args()
    method = get("ofer").from_run(args.checkpoints)
    names = list(method.face_model.expression_names)
    settings = ReconstructionSettings(shapes=20, expressions=args.expressions)
    print(f"{'folder':32s} {'records':>7s}  " + "  ".join(f"{g + ' error/spread/label':>26s}" for g in GROUPS))
    for folder in args.data:
        data = ShardDataset(folder).arrays(["arcface", "appearance", "blendshapes", "occluder_kind"])
        hidden = np.flatnonzero([kind_group(OCCLUDER_KINDS[k]) == "glasses" for k in data["occluder_kind"]])
        hidden = hidden[: args.limit]
        if len(hidden) == 0:
            print(f"{folder:32s} {0:7d}")
            continue
        recs = method.reconstruct_embeddings(data["arcface"][hidden], data["appearance"][hidden], settings,
                                             [int(i) for i in hidden])
        cells = []
        for group in GROUPS.values():
            ours, theirs = [names.index(b) for b in group], [BLENDSHAPE_NAMES.index(b) for b in group]
            value = np.stack([r.expressions[:, ours].mean(1) for r in recs])  # (B, M)
            label = data["blendshapes"][hidden][:, theirs].mean(1)
            error = np.abs(value.mean(1) - label).mean()
            cells.append(f"{error:8.3f} {value.std(1).mean():8.3f} {label.std():8.3f}")
        print(f"{folder:32s} {len(hidden):7d}  " + "  ".join(cells))

if __name__ == "__main__":
    main()
