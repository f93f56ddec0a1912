"""Print how well the ranked identity of `ofer reconstruct` results sits on each photo (issue 12 acceptance).

For each image: the median distance between the ranked identity's projected 68 landmarks (params.npz
``landmarks68_2d[0]``) and MediaPipe's 68 points, as a fraction of the inter-ocular distance (36-45).

Usage: python scripts/landmark_agreement.py OUT IMAGE... (OUT: the -o folder of ofer reconstruct)
"""
import json
import sys
from pathlib import Path

import numpy as np

from ofer.fitting import observe
from ofer.frontend import ibug68_from_mediapipe, load_image

out = Path(sys.argv[1])
for image in sys.argv[2:]:
    folder = out / Path(image).stem
    summary = json.loads((folder / "summary.json").read_text())
    params = np.load(folder / "params.npz")
    face = observe(load_image(image), np.asarray(summary["box"]))
    seen = ibug68_from_mediapipe(face.points)[:, :2]
    iod = np.linalg.norm(seen[36] - seen[45])
    for index, name in ((0, "identity"),):
        err = np.linalg.norm(params["landmarks68_2d"][index] - seen, axis=1)
        print(f"{Path(image).name:14s} {name}: median {np.median(err) / iod * 100:5.2f} % of IOD "
              f"({np.median(err):.1f} px, IOD {iod:.0f} px), mean over hypotheses "
              f"{np.mean([np.median(np.linalg.norm(l - seen, axis=1)) for l in params['landmarks68_2d'][1:]]) / iod * 100:5.2f} %")
