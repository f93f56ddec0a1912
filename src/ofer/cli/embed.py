"""``ofer embed IMAGE... -o OUT.npz``: identity (ArcFace) and appearance embeddings of each image's main face.

The npz holds, for the N images that succeeded (in the order given):
``arcface`` (N, 512) float32 unit vectors, ``appearance`` (N, D) float32, ``appearance_found`` (N,) bool
(False where the appearance encoder found no face in its crop; its embedding is then zeros),
``paths`` (N,) and ``names`` (N,) strings, ``boxes`` (N, 4) x1 y1 x2 y2, ``scores`` (N,), ``keypoints``
(N, 5, 2) pixels, ``arcface_encoder`` and ``appearance_encoder`` (names, 0-d strings). It is written
atomically. An image that cannot be read or has no face gets one line on stderr and is left out; the
command then exits with 1 (nothing is written if no image succeeded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..frontend import (
    DEFAULT_ENCODERS,
    Detection,
    Embeddings,
    FrontEnd,
    available_encoders,
    get_frontend,
    load_image,
)
from ..io.atomic import save_npz
from .outputs import output_file

CHUNK = 16  # images read and detected together


def register(subparsers) -> None:
    parser = subparsers.add_parser("embed", help="ArcFace and appearance embeddings of the main face of images")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG/PNG files")
    parser.add_argument("-o", "--output", required=True, help="output .npz")
    parser.add_argument(
        "--appearance",
        choices=available_encoders("appearance", aliases=True),
        default=DEFAULT_ENCODERS["appearance"],
        help="appearance encoder (default: %(default)s)",
    )
    parser.set_defaults(func=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    output = output_file(args.output)
    if output.suffix != ".npz":
        output = output.with_name(output.name + ".npz")
    frontend = get_frontend({"appearance": {"name": args.appearance}})
    detections: list[Detection] = []
    paths: list[str] = []
    embeddings: list[Embeddings] = []
    failed = 0
    for start in range(0, len(args.images), CHUNK):
        chunk = args.images[start : start + CHUNK]
        images = {}
        for index, path in enumerate(chunk):
            try:
                images[index] = load_image(path)
            except InputError as exc:
                print(f"ofer: error: {exc}", file=sys.stderr)
                failed += 1
        faces = []
        for index, face in zip(images, frontend.main_faces(list(images.values()))):
            if face is None:
                print(f"ofer: error: {chunk[index]}: no face found", file=sys.stderr)
                failed += 1
                continue
            paths.append(str(chunk[index]))
            faces.append(face)
        if faces:  # embedded per chunk, so only the detections are kept, not the crops
            embeddings.append(frontend.embed(faces))
            detections.extend(face.detection for face in faces)
    if not detections:
        print("ofer: error: no face embedded; nothing written", file=sys.stderr)
        return 1
    save_npz(output, **embedding_arrays(frontend, detections, paths, embeddings))
    identity, appearance = frontend.identity, frontend.appearance
    print(
        f"wrote {output}: {len(paths)} face{'s' if len(paths) != 1 else ''}, "
        f"{identity.name} ({identity.dim}), {appearance.name} ({appearance.dim})"
        + (f"; {failed} image{'s' if failed != 1 else ''} failed" if failed else "")
    )
    return 1 if failed else 0


def embedding_arrays(
    frontend: FrontEnd, detections: list[Detection], paths: list[str], embeddings: list[Embeddings]
) -> dict[str, np.ndarray]:
    """The arrays of the npz (see the module docstring)."""
    return {
        "arcface": np.concatenate([e.identity for e in embeddings]),
        "appearance": np.concatenate([e.appearance for e in embeddings]),
        "appearance_found": np.concatenate([e.appearance_found for e in embeddings]),
        "paths": np.array(paths, dtype=str),
        "names": np.array([Path(p).name for p in paths], dtype=str),
        "boxes": np.stack([d.box for d in detections]).astype(np.float32),
        "scores": np.array([d.score for d in detections], dtype=np.float32),
        "keypoints": np.stack([d.keypoints for d in detections]).astype(np.float32),
        "arcface_encoder": np.array(frontend.identity.name),
        "appearance_encoder": np.array(frontend.appearance.name),
    }
