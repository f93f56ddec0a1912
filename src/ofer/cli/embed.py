"""``ofer embed IMAGE... -o OUT.npz``: identity (ArcFace) and appearance embeddings of each image's main face.

The npz holds, for the N images that succeeded (in the order given):
``arcface`` (N, 512) float32 unit vectors, ``appearance`` (N, D) float32, ``paths`` (N,) and ``names``
(N,) strings, ``boxes`` (N, 4) x1 y1 x2 y2, ``scores`` (N,), ``keypoints`` (N, 5, 2) pixels,
``arcface_encoder`` and ``appearance_encoder`` (names, 0-d strings). It is written atomically (a
temporary file in the same folder, then renamed). An image that cannot be read or has no face gets
one line on stderr and is left out; the command then exits with 1 (nothing is written if no image
succeeded).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError

CHUNK = 16  # images processed together


def register(subparsers) -> None:
    from ..frontend.appearance import APPEARANCE_ENCODERS, DEFAULT_APPEARANCE

    parser = subparsers.add_parser("embed", help="ArcFace and appearance embeddings of the main face of images")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG/PNG files")
    parser.add_argument("-o", "--output", required=True, help="output .npz")
    parser.add_argument(
        "--appearance", choices=tuple(APPEARANCE_ENCODERS), default=DEFAULT_APPEARANCE, help="appearance encoder"
    )
    parser.set_defaults(func=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    from ..frontend import get_frontend, load_image

    output = Path(args.output)
    if output.suffix != ".npz":
        output = output.with_name(output.name + ".npz")
    frontend = get_frontend(args.appearance)
    kept_paths, faces, failed = [], [], 0
    identity, appearance = [], []
    for start in range(0, len(args.images), CHUNK):
        chunk = args.images[start : start + CHUNK]
        images = {}
        for index, path in enumerate(chunk):
            try:
                images[index] = load_image(path)
            except InputError as exc:
                print(f"ofer: error: {exc}", file=sys.stderr)
                failed += 1
        found = dict(zip(images, frontend.main_faces(list(images.values()))))
        chunk_faces = []
        for index, path in enumerate(chunk):
            if index not in found:
                continue
            if found[index] is None:
                print(f"ofer: error: {path}: no face found", file=sys.stderr)
                failed += 1
                continue
            kept_paths.append(str(path))
            chunk_faces.append(found[index])
        if chunk_faces:
            ids, apps = frontend.embed(chunk_faces)
            identity.append(ids)
            appearance.append(apps)
            faces.extend(chunk_faces)
    if not faces:
        print("ofer: error: no face embedded; nothing written", file=sys.stderr)
        return 1
    data = {
        "arcface": np.concatenate(identity).astype(np.float32),
        "appearance": np.concatenate(appearance).astype(np.float32),
        "paths": np.array(kept_paths, dtype=str),
        "names": np.array([Path(p).name for p in kept_paths], dtype=str),
        "boxes": np.stack([f.detection.box for f in faces]).astype(np.float32),
        "scores": np.array([f.detection.score for f in faces], dtype=np.float32),
        "keypoints": np.stack([f.detection.keypoints for f in faces]).astype(np.float32),
        "arcface_encoder": np.array(frontend.arcface.name),
        "appearance_encoder": np.array(frontend.appearance.name),
    }
    save_npz_atomic(output, data)
    print(
        f"wrote {output}: {len(faces)} face{'s' if len(faces) != 1 else ''}, "
        f"{frontend.arcface.name} ({data['arcface'].shape[1]}), {frontend.appearance.name} ({data['appearance'].shape[1]})"
        + (f"; {failed} image{'s' if failed != 1 else ''} failed" if failed else "")
    )
    return 1 if failed else 0


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to a temporary file beside ``path``, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
